package dev.jitbridge.keycloak;

import java.nio.charset.StandardCharsets;

/**
 * One event on its way to jit-bridge: the JSON body, built once in the request thread, and the
 * event id used in log lines. The body bytes are exactly what gets signed and sent.
 */
public record BridgeEvent(String id, String kind, String type, byte[] body) {

    /** Wraps an already serialised body, e.g. from {@link PayloadBuilder}. */
    public static BridgeEvent of(String id, String kind, String type, String json) {
        return new BridgeEvent(id, kind, type, json.getBytes(StandardCharsets.UTF_8));
    }

    /** How log lines name this event: never the body, which holds user ids. */
    public String describe() {
        return kind + " event " + type + " (id " + id + ")";
    }
}
