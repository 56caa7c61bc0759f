package dev.jitbridge.keycloak;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.net.ConnectException;
import java.net.URI;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class SenderTest {

    private static final URI URL = URI.create("http://bridge.test/webhooks/keycloak");
    private static final Instant NOW = Instant.parse("2026-01-01T00:00:00Z");
    private static final BridgeEvent EVENT =
            BridgeEvent.of("ev-1", "user", "LOGIN", PayloadBuilder.userEvent("ev-1", 1L, "acme", "LOGIN", "u-1"));

    /** Answers from a script; an IOException in the script is thrown instead of answered. */
    private static final class ScriptedTransport implements HttpTransport {
        final Deque<Object> script = new ArrayDeque<>();
        final List<Map<String, String>> headers = new ArrayList<>();
        final List<byte[]> bodies = new ArrayList<>();

        ScriptedTransport answer(Object... answers) {
            script.addAll(List.of(answers));
            return this;
        }

        @Override
        public Response post(URI url, Map<String, String> headers, byte[] body) throws IOException {
            this.headers.add(headers);
            this.bodies.add(body);
            Object next = script.removeFirst();
            if (next instanceof IOException e) {
                throw e;
            }
            return (Response) next;
        }
    }

    private final List<Duration> sleeps = new ArrayList<>();

    private Sender sender(HttpTransport transport, int maxAttempts) {
        RetryPolicy noJitter = new RetryPolicy(
                RetryPolicy.DEFAULT_INITIAL_DELAY, 2.0, RetryPolicy.DEFAULT_MAX_DELAY, maxAttempts, () -> 0.0);
        return new Sender(
                URL, new Signer("s3cret"), transport, noJitter, Clock.fixed(NOW, ZoneOffset.UTC), sleeps::add);
    }

    private static HttpTransport.Response status(int code) {
        return new HttpTransport.Response(code, null);
    }

    @Test
    void retriesServerErrorsWithBackoffThenDelivers() {
        ScriptedTransport transport = new ScriptedTransport().answer(status(500), status(502), status(202));

        assertEquals(Sender.Outcome.DELIVERED, sender(transport, 8).send(EVENT));
        assertEquals(3, transport.bodies.size());
        assertEquals(List.of(Duration.ofMillis(250), Duration.ofMillis(500)), sleeps);
    }

    @Test
    void everyAttemptCarriesTheSameSignedBody() {
        ScriptedTransport transport = new ScriptedTransport().answer(status(503), status(200));

        sender(transport, 8).send(EVENT);

        String expected = new Signer("s3cret").header(NOW.getEpochSecond(), EVENT.body());
        for (int i = 0; i < 2; i++) {
            assertArrayEquals(EVENT.body(), transport.bodies.get(i));
            assertEquals(expected, transport.headers.get(i).get(Signer.HEADER));
            assertEquals("application/json", transport.headers.get(i).get("Content-Type"));
        }
    }

    @Test
    void honoursRetryAfterSecondsOn429() {
        ScriptedTransport transport =
                new ScriptedTransport().answer(new HttpTransport.Response(429, "7"), status(200));

        assertEquals(Sender.Outcome.DELIVERED, sender(transport, 8).send(EVENT));
        assertEquals(List.of(Duration.ofSeconds(7)), sleeps);
    }

    @Test
    void honoursRetryAfterHttpDateOn503() {
        ScriptedTransport transport = new ScriptedTransport()
                .answer(new HttpTransport.Response(503, "Thu, 01 Jan 2026 00:00:12 GMT"), status(200));

        assertEquals(Sender.Outcome.DELIVERED, sender(transport, 8).send(EVENT));
        assertEquals(List.of(Duration.ofSeconds(12)), sleeps);
    }

    @Test
    void unreadableRetryAfterFallsBackToBackoff() {
        ScriptedTransport transport =
                new ScriptedTransport().answer(new HttpTransport.Response(503, "soon"), status(200));

        sender(transport, 8).send(EVENT);

        assertEquals(List.of(Duration.ofMillis(250)), sleeps);
    }

    @Test
    void retriesNetworkErrors() {
        ScriptedTransport transport =
                new ScriptedTransport().answer(new ConnectException("Connection refused"), status(200));

        assertEquals(Sender.Outcome.DELIVERED, sender(transport, 8).send(EVENT));
        assertEquals(2, transport.bodies.size());
    }

    @Test
    void doesNotRetryARejection() {
        ScriptedTransport transport = new ScriptedTransport().answer(status(401));

        assertEquals(Sender.Outcome.REJECTED, sender(transport, 8).send(EVENT));
        assertEquals(1, transport.bodies.size());
        assertEquals(List.of(), sleeps);
    }

    @Test
    void givesUpAfterMaxAttempts() {
        ScriptedTransport transport = new ScriptedTransport()
                .answer(status(500), status(500), status(500), status(500), status(200));

        assertEquals(Sender.Outcome.GAVE_UP, sender(transport, 4).send(EVENT));
        assertEquals(4, transport.bodies.size());
        assertEquals(List.of(Duration.ofMillis(250), Duration.ofMillis(500), Duration.ofMillis(1000)), sleeps);
    }
}
