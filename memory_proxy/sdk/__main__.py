"""``python -m memory_proxy.sdk``: the memory proxy in SDK mode (``start_proxies.py up --mode sdk``)."""

import sys

from memory_proxy.sdk.app import main

if __name__ == "__main__":
    sys.exit(main())
