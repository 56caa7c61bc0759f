package dev.jitbridge.keycloak;

import java.io.IOException;
import java.net.URI;
import java.time.Clock;
import java.time.Duration;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;
import java.util.Map;
import org.jboss.logging.Logger;

/**
 * Delivers one {@link BridgeEvent} to the bridge: signs the body, POSTs it, and retries transient
 * failures according to a {@link RetryPolicy}. Runs on the delivery thread only, so it may sleep.
 *
 * <p>Transient: network errors, 408, 425, 429 and 5xx. Any other 4xx means this request will never
 * be accepted (bad signature, malformed body) and is not retried. Each attempt is signed with the
 * current time, so a retry after a long wait still falls inside the bridge's 300 s window.
 */
public final class Sender {

    /** How a delivery ended. */
    public enum Outcome {
        DELIVERED,
        REJECTED,
        GAVE_UP,
        INTERRUPTED
    }

    /** Waits between attempts; a parameter so tests run without real sleeping. */
    @FunctionalInterface
    public interface Sleeper {
        void sleep(Duration delay) throws InterruptedException;
    }

    private static final Logger LOG = Logger.getLogger(Sender.class);

    private final URI url;
    private final Signer signer;
    private final HttpTransport transport;
    private final RetryPolicy retryPolicy;
    private final Clock clock;
    private final Sleeper sleeper;

    public Sender(URI url, Signer signer, HttpTransport transport, RetryPolicy retryPolicy, Clock clock, Sleeper sleeper) {
        this.url = url;
        this.signer = signer;
        this.transport = transport;
        this.retryPolicy = retryPolicy;
        this.clock = clock;
        this.sleeper = sleeper;
    }

    /** Tries until delivered, permanently rejected, or out of attempts; never throws. */
    public Outcome send(BridgeEvent event) {
        for (int attempt = 1; ; attempt++) {
            Duration retryAfter = null;
            String failure;
            try {
                HttpTransport.Response response = transport.post(url, headers(event), event.body());
                int status = response.status();
                if (status >= 200 && status < 300) {
                    return Outcome.DELIVERED;
                }
                if (!isTransient(status)) {
                    LOG.errorf(
                            "jit-bridge refused %s with HTTP %d; not retrying. A 401 means the secret differs "
                                    + "from the bridge's webhook_secret; a 400/413/415 means a bug in this listener.",
                            event.describe(),
                            status);
                    return Outcome.REJECTED;
                }
                failure = "HTTP " + status;
                retryAfter = parseRetryAfter(response.retryAfter());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return Outcome.INTERRUPTED;
            } catch (IOException | RuntimeException e) {
                failure = e.getClass().getSimpleName() + (e.getMessage() == null ? "" : ": " + e.getMessage());
            }
            if (attempt >= retryPolicy.maxAttempts()) {
                LOG.errorf(
                        "Giving up on %s after %d attempts to %s (last failure: %s). In enhanced mode the "
                                + "bridge's scheduled reconcile heals group, role, disable, delete and email "
                                + "changes; a missed login is provisioned at the user's next login, or found by "
                                + "event-store polling if that is on.",
                        event.describe(),
                        attempt,
                        url,
                        failure);
                return Outcome.GAVE_UP;
            }
            Duration delay = retryPolicy.delayBefore(attempt, retryAfter);
            LOG.debugf("Delivery of %s failed (%s); retrying in %d ms", event.describe(), failure, delay.toMillis());
            try {
                sleeper.sleep(delay);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return Outcome.INTERRUPTED;
            }
        }
    }

    private Map<String, String> headers(BridgeEvent event) {
        long now = clock.instant().getEpochSecond();
        return Map.of(
                "Content-Type", "application/json",
                Signer.HEADER, signer.header(now, event.body()));
    }

    static boolean isTransient(int status) {
        return status == 408 || status == 425 || status == 429 || status >= 500;
    }

    /**
     * {@code Retry-After} as delta-seconds or an HTTP-date (RFC 9110 section 10.2.3); {@code null}
     * when absent or unreadable, in which case plain backoff applies.
     */
    Duration parseRetryAfter(String value) {
        if (value == null || value.isBlank()) {
            return null;
        }
        String trimmed = value.trim();
        try {
            long seconds = Long.parseLong(trimmed);
            return seconds < 0 ? null : Duration.ofSeconds(seconds);
        } catch (NumberFormatException notSeconds) {
            try {
                ZonedDateTime at = ZonedDateTime.parse(trimmed, DateTimeFormatter.RFC_1123_DATE_TIME);
                Duration until = Duration.between(clock.instant(), at.toInstant());
                return until.isNegative() ? Duration.ZERO : until;
            } catch (DateTimeParseException notDate) {
                return null;
            }
        }
    }
}
