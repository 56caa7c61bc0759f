package dev.jitbridge.keycloak;

import java.util.concurrent.atomic.AtomicLong;
import org.jboss.logging.Logger;

/**
 * Counts events the listener could not hand over, so a gap is never silent. An unexpected
 * exception is logged each time; a {@link LinkageError} (this Keycloak release lacks a class or
 * method the jar calls) would repeat on every event, so it is logged with its stack trace once
 * and then every {@value #LOG_EVERY}th time with the running count.
 */
final class ListenerFailures {

    static final int LOG_EVERY = 100;

    private static final Logger LOG = Logger.getLogger(ListenerFailures.class);

    private final AtomicLong failed = new AtomicLong();
    private final AtomicLong linkage = new AtomicLong();

    void record(String event, Throwable error) {
        long total = failed.incrementAndGet();
        if (error instanceof LinkageError) {
            long n = linkage.incrementAndGet();
            if (n == 1) {
                LOG.errorf(error, "jit-bridge listener cannot forward %s: this Keycloak release lacks an API the "
                        + "listener calls (%s); the event is dropped and the bridge's reconcile heals. Please "
                        + "report this with the Keycloak version. Further such failures are counted", event, error);
            } else if (n % LOG_EVERY == 0) {
                LOG.errorf("jit-bridge listener: %d event(s) not forwarded since start because of %s", total, error);
            }
            return;
        }
        LOG.warnf(error, "jit-bridge listener could not queue %s; Keycloak is not affected (%d event(s) not "
                + "forwarded since start)", event, total);
    }

    long count() {
        return failed.get();
    }
}
