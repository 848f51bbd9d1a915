"""``python -m memory_proxy``: the memory proxy of binary mode (``start_proxies.py up`` starts it)."""

import sys

from memory_proxy.server.serve import main

if __name__ == "__main__":
    sys.exit(main())
