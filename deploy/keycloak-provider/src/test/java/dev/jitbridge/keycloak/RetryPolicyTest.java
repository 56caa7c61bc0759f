package dev.jitbridge.keycloak;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class RetryPolicyTest {

    private static RetryPolicy policy(double random) {
        return new RetryPolicy(
                RetryPolicy.DEFAULT_INITIAL_DELAY,
                RetryPolicy.DEFAULT_FACTOR,
                RetryPolicy.DEFAULT_MAX_DELAY,
                RetryPolicy.DEFAULT_MAX_ATTEMPTS,
                () -> random);
    }

    @Test
    void backoffDoublesFromHalfASecondUpToThirtySeconds() {
        List<Long> schedule = new ArrayList<>();
        for (int retry = 1; retry <= 8; retry++) {
            schedule.add(policy(0).backoff(retry).toMillis());
        }

        assertEquals(List.of(500L, 1000L, 2000L, 4000L, 8000L, 16000L, 30000L, 30000L), schedule);
    }

    @Test
    void jitterStaysInTheUpperHalfOfTheBackoff() {
        assertEquals(Duration.ofMillis(2000), policy(0.0).delayBefore(4, null));
        assertEquals(Duration.ofMillis(3000), policy(0.5).delayBefore(4, null));
        assertEquals(Duration.ofMillis(3999), policy(0.99975).delayBefore(4, null));
    }

    @Test
    void longerRetryAfterWins() {
        assertEquals(Duration.ofSeconds(20), policy(0).delayBefore(1, Duration.ofSeconds(20)));
    }

    @Test
    void shorterRetryAfterDoesNotShortenTheBackoff() {
        assertEquals(Duration.ofMillis(4000), policy(0).delayBefore(5, Duration.ofSeconds(1)));
        assertEquals(policy(0).delayBefore(5, null), policy(0).delayBefore(5, Duration.ofSeconds(1)));
    }

    @Test
    void retryAfterIsCappedAtFiveMinutes() {
        assertEquals(RetryPolicy.MAX_RETRY_AFTER, policy(0).delayBefore(1, Duration.ofHours(2)));
    }

    @Test
    void needsAtLeastOneAttempt() {
        assertThrows(IllegalArgumentException.class, () -> RetryPolicy.withMaxAttempts(0));
    }
}
