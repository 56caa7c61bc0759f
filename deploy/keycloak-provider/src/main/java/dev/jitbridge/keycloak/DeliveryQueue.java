package dev.jitbridge.keycloak;

import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Function;
import org.jboss.logging.Logger;

/**
 * The bounded hand-off between Keycloak's request threads and the single delivery thread.
 *
 * <p>{@link #offer} never blocks: when the queue is full the event is dropped and counted, because
 * a slow or absent bridge must never hold up a login. In enhanced mode the bridge's scheduled
 * reconcile re-reads Keycloak and heals a dropped change (groups, roles, disables, deletions,
 * email changes); a dropped login is provisioned at the user's next login.
 */
public final class DeliveryQueue implements AutoCloseable {

    public static final int DEFAULT_CAPACITY = 10_000;

    /** Drops are logged on the first and then on every this-many-th, so a full queue cannot flood the log. */
    static final long DROP_LOG_EVERY = 100;

    private static final Logger LOG = Logger.getLogger(DeliveryQueue.class);
    private static final long CLOSE_WAIT_MILLIS = 5_000;

    private final BlockingQueue<BridgeEvent> events;
    private final Function<BridgeEvent, Sender.Outcome> deliver;
    private final AtomicLong dropped = new AtomicLong();
    private final AtomicLong delivered = new AtomicLong();
    private final AtomicLong failed = new AtomicLong();
    private volatile Thread worker;
    private volatile boolean running;

    public DeliveryQueue(int capacity, Function<BridgeEvent, Sender.Outcome> deliver) {
        if (capacity < 1) {
            throw new IllegalArgumentException("queue-size must be at least 1, got " + capacity);
        }
        this.events = new ArrayBlockingQueue<>(capacity);
        this.deliver = deliver;
    }

    /** Queues {@code event} for delivery; returns false (and counts a drop) when the queue is full. */
    public boolean offer(BridgeEvent event) {
        if (events.offer(event)) {
            return true;
        }
        long total = dropped.incrementAndGet();
        if (total == 1 || total % DROP_LOG_EVERY == 0) {
            LOG.warnf(
                    "jit-bridge delivery queue is full (%d waiting); dropped %s. %d event(s) dropped since "
                            + "start. Is the bridge reachable? In enhanced mode its scheduled reconcile heals "
                            + "changes; a dropped login waits for the user's next login.",
                    events.size(),
                    event.describe(),
                    total);
        }
        return false;
    }

    /** Starts the daemon delivery thread; calling it twice is harmless. */
    public synchronized void start() {
        if (worker != null) {
            return;
        }
        running = true;
        Thread thread = new Thread(this::drain, "jit-bridge-event-delivery");
        thread.setDaemon(true);
        worker = thread;
        thread.start();
    }

    /** Stops the delivery thread; events still waiting are counted in the log and discarded. */
    @Override
    public synchronized void close() {
        Thread thread = worker;
        if (thread == null) {
            return;
        }
        running = false;
        thread.interrupt();
        try {
            thread.join(CLOSE_WAIT_MILLIS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        worker = null;
        int left = events.size();
        events.clear();
        if (left > 0) {
            LOG.warnf("jit-bridge listener stopped with %d undelivered event(s); the next reconcile covers them", left);
        }
    }

    public long droppedCount() {
        return dropped.get();
    }

    public long deliveredCount() {
        return delivered.get();
    }

    public long failedCount() {
        return failed.get();
    }

    public int waiting() {
        return events.size();
    }

    private void drain() {
        while (running) {
            BridgeEvent event;
            try {
                event = events.poll(1, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                return;
            }
            if (event == null) {
                continue;
            }
            try {
                Sender.Outcome outcome = deliver.apply(event);
                if (outcome == Sender.Outcome.DELIVERED) {
                    delivered.incrementAndGet();
                } else if (outcome == Sender.Outcome.INTERRUPTED) {
                    return;
                } else {
                    failed.incrementAndGet();
                }
            } catch (RuntimeException e) {
                // A bug in delivery must not kill the only delivery thread.
                failed.incrementAndGet();
                LOG.errorf(e, "Unexpected error delivering %s", event.describe());
            }
        }
    }
}
