package dev.jitbridge.keycloak;

import java.io.IOException;
import java.net.URI;
import java.util.Map;

/** The one HTTP call the sender makes; an interface so tests can script answers. */
@FunctionalInterface
public interface HttpTransport {

    /** What the sender needs from a response: the status and the raw {@code Retry-After}, if any. */
    record Response(int status, String retryAfter) {}

    Response post(URI url, Map<String, String> headers, byte[] body) throws IOException, InterruptedException;
}
