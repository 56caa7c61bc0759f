package dev.jitbridge.keycloak;

import java.time.Duration;
import java.util.concurrent.ThreadLocalRandom;
import java.util.function.DoubleSupplier;

/**
 * When to try a failed delivery again: exponential backoff with jitter, and the receiver's
 * {@code Retry-After} when it sends one.
 *
 * <p>The backoff before retry {@code n} (n = 1 after the first failure) is
 * {@code min(maxDelay, initialDelay * factor^(n-1))}; jitter then picks a delay uniformly in the
 * upper half of that, so many Keycloak nodes that lost the bridge at once do not retry in step.
 * A {@code Retry-After} longer than the backoff wins, capped at {@link #MAX_RETRY_AFTER} so one
 * answer cannot park the delivery thread for hours.
 */
public final class RetryPolicy {

    public static final Duration DEFAULT_INITIAL_DELAY = Duration.ofMillis(500);
    public static final double DEFAULT_FACTOR = 2.0;
    public static final Duration DEFAULT_MAX_DELAY = Duration.ofSeconds(30);
    public static final int DEFAULT_MAX_ATTEMPTS = 8;
    public static final Duration MAX_RETRY_AFTER = Duration.ofMinutes(5);

    private final Duration initialDelay;
    private final double factor;
    private final Duration maxDelay;
    private final int maxAttempts;
    private final DoubleSupplier random;

    /**
     * @param random returns a value in [0, 1); inject a constant in tests to pin the jitter
     */
    public RetryPolicy(
            Duration initialDelay, double factor, Duration maxDelay, int maxAttempts, DoubleSupplier random) {
        if (maxAttempts < 1) {
            throw new IllegalArgumentException("max-attempts must be at least 1, got " + maxAttempts);
        }
        this.initialDelay = initialDelay;
        this.factor = factor;
        this.maxDelay = maxDelay;
        this.maxAttempts = maxAttempts;
        this.random = random;
    }

    /** The defaults of docs/design.md, Listener with the given attempt limit and real randomness. */
    public static RetryPolicy withMaxAttempts(int maxAttempts) {
        return new RetryPolicy(
                DEFAULT_INITIAL_DELAY,
                DEFAULT_FACTOR,
                DEFAULT_MAX_DELAY,
                maxAttempts,
                () -> ThreadLocalRandom.current().nextDouble());
    }

    /** Total attempts, the first one included. */
    public int maxAttempts() {
        return maxAttempts;
    }

    /** The backoff ceiling before retry number {@code retry} (1-based), without jitter. */
    public Duration backoff(int retry) {
        double millis = initialDelay.toMillis() * Math.pow(factor, retry - 1);
        return millis >= maxDelay.toMillis() ? maxDelay : Duration.ofMillis((long) millis);
    }

    /** The delay to wait before retry number {@code retry}, honouring {@code retryAfter} if not null. */
    public Duration delayBefore(int retry, Duration retryAfter) {
        long ceiling = backoff(retry).toMillis();
        long half = ceiling / 2;
        Duration jittered = Duration.ofMillis(half + (long) (random.getAsDouble() * (ceiling - half)));
        if (retryAfter == null || retryAfter.compareTo(jittered) <= 0) {
            return jittered;
        }
        return retryAfter.compareTo(MAX_RETRY_AFTER) > 0 ? MAX_RETRY_AFTER : retryAfter;
    }
}
