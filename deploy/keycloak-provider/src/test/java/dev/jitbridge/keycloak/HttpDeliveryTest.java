package dev.jitbridge.keycloak;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.sun.net.httpserver.HttpServer;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.URI;
import java.time.Clock;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The sender against a real HTTP server on 127.0.0.1, as the bridge would receive it. */
class HttpDeliveryTest {

    private record Received(byte[] body, String signature, String contentType) {}

    private static final String SECRET = "local-secret";

    private HttpServer server;
    private final List<Received> received = new CopyOnWriteArrayList<>();
    private final AtomicInteger failuresLeft = new AtomicInteger();
    private final CountDownLatch accepted = new CountDownLatch(1);

    @BeforeEach
    void startServer() throws Exception {
        server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
        server.createContext("/webhooks/keycloak", exchange -> {
            received.add(new Received(
                    exchange.getRequestBody().readAllBytes(),
                    exchange.getRequestHeaders().getFirst(Signer.HEADER),
                    exchange.getRequestHeaders().getFirst("Content-Type")));
            int status = failuresLeft.getAndDecrement() > 0 ? 500 : 202;
            exchange.sendResponseHeaders(status, -1);
            exchange.close();
            if (status == 202) {
                accepted.countDown();
            }
        });
        server.start();
    }

    @AfterEach
    void stopServer() {
        server.stop(0);
    }

    private URI url() {
        return URI.create("http://127.0.0.1:" + server.getAddress().getPort() + "/webhooks/keycloak");
    }

    private Sender sender() {
        return new Sender(
                url(),
                new Signer(SECRET),
                new JdkHttpTransport(Duration.ofSeconds(2), Duration.ofSeconds(5)),
                RetryPolicy.withMaxAttempts(3),
                Clock.systemUTC(),
                delay -> {});
    }

    @Test
    void postsTheSignedBodyAndRetriesAfterA500() {
        failuresLeft.set(1);
        String json = PayloadBuilder.adminEvent("ev-9", 9L, "acme", "USER", "UPDATE", "users/u-9");
        BridgeEvent event = BridgeEvent.of("ev-9", "admin", "USER:UPDATE", json);

        assertEquals(Sender.Outcome.DELIVERED, sender().send(event));

        assertEquals(2, received.size());
        for (Received request : received) {
            assertArrayEquals(event.body(), request.body());
            assertEquals("application/json", request.contentType());
            String t = request.signature().substring(2, request.signature().indexOf(','));
            assertEquals(new Signer(SECRET).header(Long.parseLong(t), request.body()), request.signature());
        }
    }

    @Test
    void queueDeliversInTheBackgroundThroughTheRealServer() throws Exception {
        BridgeEvent event = BridgeEvent.of(
                "ev-10", "user", "LOGIN", PayloadBuilder.userEvent("ev-10", 10L, "acme", "LOGIN", "u-10"));

        try (DeliveryQueue queue = new DeliveryQueue(10, sender()::send)) {
            queue.start();
            assertTrue(queue.offer(event));
            assertTrue(accepted.await(30, TimeUnit.SECONDS), "the bridge never received the event");
        }

        assertArrayEquals(event.body(), received.get(0).body());
    }
}
