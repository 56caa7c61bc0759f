package dev.jitbridge.keycloak;

import java.net.URI;
import java.net.URISyntaxException;
import java.time.Duration;
import java.util.function.Function;

/**
 * The listener's SPI options, read from Keycloak's {@code Config.Scope} through a plain lookup
 * function so that parsing can be tested without Keycloak.
 *
 * <p>Options (CLI form {@code --spi-events-listener--jit-bridge--<name>=...}, or the older
 * {@code --spi-events-listener-jit-bridge-<name>=...}; see {@link SpiOptions}): {@code url},
 * {@code secret}, {@code connect-timeout-ms}, {@code request-timeout-ms}, {@code queue-size},
 * {@code max-attempts}, {@code event-types}.
 */
public final class ListenerSettings {

    public static final String URL = "url";
    public static final String SECRET = "secret";
    public static final String CONNECT_TIMEOUT_MS = "connect-timeout-ms";
    public static final String REQUEST_TIMEOUT_MS = "request-timeout-ms";
    public static final String QUEUE_SIZE = "queue-size";
    public static final String MAX_ATTEMPTS = "max-attempts";
    public static final String EVENT_TYPES = "event-types";

    public static final int DEFAULT_CONNECT_TIMEOUT_MS = 2_000;
    public static final int DEFAULT_REQUEST_TIMEOUT_MS = 5_000;

    private static final String OPTION_PREFIX = "--spi-events-listener--jit-bridge--";
    private static final String LEGACY_OPTION_PREFIX = "--spi-events-listener-jit-bridge-";

    private final URI url;
    private final String secret;
    private final Duration connectTimeout;
    private final Duration requestTimeout;
    private final int queueSize;
    private final int maxAttempts;
    private final EventSelection eventSelection;

    private ListenerSettings(
            URI url,
            String secret,
            Duration connectTimeout,
            Duration requestTimeout,
            int queueSize,
            int maxAttempts,
            EventSelection eventSelection) {
        this.url = url;
        this.secret = secret;
        this.connectTimeout = connectTimeout;
        this.requestTimeout = requestTimeout;
        this.queueSize = queueSize;
        this.maxAttempts = maxAttempts;
        this.eventSelection = eventSelection;
    }

    /**
     * Reads and validates every option.
     *
     * @param option returns the option's value, or null when it is not set
     * @throws IllegalArgumentException with a message that names the option and says how to fix it
     */
    public static ListenerSettings read(Function<String, String> option) {
        String url = text(option, URL);
        if (url == null) {
            throw new IllegalArgumentException(
                    "no bridge URL configured; set " + OPTION_PREFIX + URL + "=https://bridge.example/webhooks/keycloak"
                            + " (or " + LEGACY_OPTION_PREFIX + URL + ", or KC_SPI_EVENTS_LISTENER__JIT_BRIDGE__URL)");
        }
        String secret = text(option, SECRET);
        if (secret == null) {
            throw new IllegalArgumentException(
                    "no signing secret configured; set " + OPTION_PREFIX + SECRET
                            + " to the bridge's webhook_secret");
        }
        String types = text(option, EVENT_TYPES);
        return new ListenerSettings(
                parseUrl(url),
                secret,
                Duration.ofMillis(positive(option, CONNECT_TIMEOUT_MS, DEFAULT_CONNECT_TIMEOUT_MS)),
                Duration.ofMillis(positive(option, REQUEST_TIMEOUT_MS, DEFAULT_REQUEST_TIMEOUT_MS)),
                positive(option, QUEUE_SIZE, DeliveryQueue.DEFAULT_CAPACITY),
                positive(option, MAX_ATTEMPTS, RetryPolicy.DEFAULT_MAX_ATTEMPTS),
                types == null ? EventSelection.defaults() : EventSelection.parse(types));
    }

    public URI url() {
        return url;
    }

    public String secret() {
        return secret;
    }

    public Duration connectTimeout() {
        return connectTimeout;
    }

    public Duration requestTimeout() {
        return requestTimeout;
    }

    public int queueSize() {
        return queueSize;
    }

    public int maxAttempts() {
        return maxAttempts;
    }

    public EventSelection eventSelection() {
        return eventSelection;
    }

    /** For the startup log line: everything but the secret. */
    @Override
    public String toString() {
        return "url=" + url + ", secret=***, connect-timeout-ms=" + connectTimeout.toMillis()
                + ", request-timeout-ms=" + requestTimeout.toMillis() + ", queue-size=" + queueSize
                + ", max-attempts=" + maxAttempts + ", event-types={" + eventSelection + "}";
    }

    private static String text(Function<String, String> option, String name) {
        String value = option.apply(name);
        return value == null || value.isBlank() ? null : value.trim();
    }

    private static URI parseUrl(String value) {
        try {
            URI uri = new URI(value);
            String scheme = uri.getScheme();
            if (("http".equalsIgnoreCase(scheme) || "https".equalsIgnoreCase(scheme)) && uri.getHost() != null) {
                return uri;
            }
        } catch (URISyntaxException e) {
            // fall through to the same actionable message
        }
        throw new IllegalArgumentException(OPTION_PREFIX + URL + " is not an http(s) URL: '" + value
                + "'; expected e.g. https://bridge.example/webhooks/keycloak");
    }

    private static int positive(Function<String, String> option, String name, int fallback) {
        String value = text(option, name);
        if (value == null) {
            return fallback;
        }
        try {
            int parsed = Integer.parseInt(value);
            if (parsed > 0) {
                return parsed;
            }
        } catch (NumberFormatException e) {
            // fall through to the same actionable message
        }
        throw new IllegalArgumentException(
                OPTION_PREFIX + name + " must be a positive whole number, got '" + value + "'");
    }
}
