import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

/**
 * The JDK's own HTTP client with default settings, as much JetBrains-era Java code uses it:
 * on http:// URLs it offers an h2c upgrade with every request. Usage:
 * java JdkClient URL COUNT BODY -- COUNT POSTs of BODY on one client; prints "status version body" per answer.
 */
public class JdkClient {
    public static void main(String[] args) throws Exception {
        HttpClient client = HttpClient.newHttpClient();
        int count = Integer.parseInt(args[1]);
        for (int i = 0; i < count; i++) {
            HttpRequest request = HttpRequest.newBuilder(URI.create(args[0]))
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(args[2])).build();
            HttpResponse<String> response = client.send(request, HttpResponse.BodyHandlers.ofString());
            System.out.println(response.statusCode() + " " + response.version() + " " + response.body().replace("\n", " "));
        }
    }
}
