package dev.jitbridge.keycloak;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URI;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

class ListenerSettingsTest {

    private static Map<String, String> minimal() {
        Map<String, String> options = new HashMap<>();
        options.put("url", "http://127.0.0.1:8080/webhooks/keycloak");
        options.put("secret", "very-secret-value");
        return options;
    }

    @Test
    void appliesTheDocumentedDefaults() {
        ListenerSettings settings = ListenerSettings.read(minimal()::get);

        assertEquals(URI.create("http://127.0.0.1:8080/webhooks/keycloak"), settings.url());
        assertEquals(Duration.ofMillis(2000), settings.connectTimeout());
        assertEquals(Duration.ofMillis(5000), settings.requestTimeout());
        assertEquals(10_000, settings.queueSize());
        assertEquals(8, settings.maxAttempts());
        assertTrue(settings.eventSelection().forwardsUserEvent("LOGIN"));
    }

    @Test
    void readsEveryOption() {
        Map<String, String> options = minimal();
        options.put("connect-timeout-ms", "100");
        options.put("request-timeout-ms", "200");
        options.put("queue-size", "3");
        options.put("max-attempts", "2");
        options.put("event-types", "REGISTER");

        ListenerSettings settings = ListenerSettings.read(options::get);

        assertEquals(Duration.ofMillis(100), settings.connectTimeout());
        assertEquals(Duration.ofMillis(200), settings.requestTimeout());
        assertEquals(3, settings.queueSize());
        assertEquals(2, settings.maxAttempts());
        assertFalse(settings.eventSelection().forwardsUserEvent("LOGIN"));
        assertTrue(settings.eventSelection().forwardsUserEvent("REGISTER"));
    }

    @Test
    void missingUrlNamesTheOptionToSet() {
        Map<String, String> options = minimal();
        options.remove("url");

        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ListenerSettings.read(options::get));
        assertTrue(e.getMessage().contains("--spi-events-listener--jit-bridge--url="), e.getMessage());
    }

    @Test
    void missingSecretNamesTheOptionToSet() {
        Map<String, String> options = minimal();
        options.put("secret", "  ");

        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ListenerSettings.read(options::get));
        assertTrue(e.getMessage().contains("--spi-events-listener--jit-bridge--secret"), e.getMessage());
    }

    @Test
    void rejectsAUrlThatIsNotHttp() {
        Map<String, String> options = minimal();
        options.put("url", "bridge:8080");

        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ListenerSettings.read(options::get));
        assertTrue(e.getMessage().contains("'bridge:8080'"), e.getMessage());
    }

    @Test
    void rejectsANonPositiveNumber() {
        Map<String, String> options = minimal();
        options.put("queue-size", "0");

        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ListenerSettings.read(options::get));
        assertTrue(e.getMessage().contains("queue-size must be a positive whole number, got '0'"), e.getMessage());
    }

    @Test
    void neverPrintsTheSecret() {
        ListenerSettings settings = ListenerSettings.read(minimal()::get);

        assertFalse(settings.toString().contains("very-secret-value"));
        assertTrue(settings.toString().contains("http://127.0.0.1:8080/webhooks/keycloak"));
    }
}
