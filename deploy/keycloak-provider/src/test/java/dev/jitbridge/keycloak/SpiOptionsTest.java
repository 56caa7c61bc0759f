package dev.jitbridge.keycloak;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import java.util.Map;
import org.junit.jupiter.api.Test;

class SpiOptionsTest {

    private static final Map<String, String> NONE = Map.of();

    @Test
    void keycloaksOwnValueComesFirst() {
        SpiOptions options = new SpiOptions(
                Map.of("url", "http://from-scope")::get,
                Map.of("kc.spi-events-listener--jit-bridge--url", "http://raw")::get);

        assertEquals("http://from-scope", options.apply("url"));
    }

    @Test
    void readsTheDoubleDashSpellingAnOlderReleaseIgnores() {
        // Keycloak 24 to 26.2: Config.Scope resolves only --spi-events-listener-jit-bridge-url.
        SpiOptions options = new SpiOptions(
                NONE::get, Map.of("kc.spi-events-listener--jit-bridge--secret", "s3cret")::get);

        assertEquals("s3cret", options.apply("secret"));
    }

    @Test
    void readsTheSingleDashSpellingToo() {
        SpiOptions options = new SpiOptions(
                Map.of("url", " ")::get, Map.of("kc.spi-events-listener-jit-bridge-max-attempts", "3")::get);

        assertEquals("3", options.apply("max-attempts"));
        assertNull(options.apply("queue-size"));
    }

    @Test
    void withoutMicroProfileConfigOnlyKeycloaksValueCounts() {
        // No MicroProfile Config implementation on the unit-test class path: the lookup must not throw.
        SpiOptions options = SpiOptions.forKeycloak(NONE::get);

        assertNull(options.apply("url"));
    }
}
