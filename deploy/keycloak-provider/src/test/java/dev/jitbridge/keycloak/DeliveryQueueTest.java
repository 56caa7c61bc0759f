package dev.jitbridge.keycloak;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

class DeliveryQueueTest {

    private static BridgeEvent event(String id) {
        return BridgeEvent.of(id, "user", "LOGIN", PayloadBuilder.userEvent(id, 1L, "acme", "LOGIN", "u"));
    }

    @Test
    void dropsAndCountsWhenFullInsteadOfBlocking() {
        try (DeliveryQueue queue = new DeliveryQueue(2, e -> Sender.Outcome.DELIVERED)) {
            assertTrue(queue.offer(event("1")));
            assertTrue(queue.offer(event("2")));
            assertFalse(queue.offer(event("3")));
            assertFalse(queue.offer(event("4")));

            assertEquals(2, queue.droppedCount());
            assertEquals(2, queue.waiting());
        }
    }

    @Test
    void deliversInOrderOnItsOwnDaemonThread() throws Exception {
        List<String> seen = new CopyOnWriteArrayList<>();
        List<Boolean> daemon = new CopyOnWriteArrayList<>();
        CountDownLatch done = new CountDownLatch(3);

        try (DeliveryQueue queue = new DeliveryQueue(10, e -> {
            seen.add(e.id());
            daemon.add(Thread.currentThread().isDaemon());
            done.countDown();
            return Sender.Outcome.DELIVERED;
        })) {
            queue.offer(event("a"));
            queue.offer(event("b"));
            queue.offer(event("c"));
            queue.start();
            assertTrue(done.await(30, TimeUnit.SECONDS));
        }

        assertEquals(List.of("a", "b", "c"), seen);
        assertEquals(List.of(true, true, true), daemon);
    }

    @Test
    void keepsDeliveringAfterAFailedOrCrashingDelivery() throws Exception {
        CountDownLatch done = new CountDownLatch(1);
        try (DeliveryQueue queue = new DeliveryQueue(10, e -> {
            if (e.id().equals("boom")) {
                throw new IllegalStateException("bug");
            }
            if (e.id().equals("lost")) {
                return Sender.Outcome.GAVE_UP;
            }
            done.countDown();
            return Sender.Outcome.DELIVERED;
        })) {
            queue.start();
            queue.offer(event("boom"));
            queue.offer(event("lost"));
            queue.offer(event("ok"));
            assertTrue(done.await(30, TimeUnit.SECONDS));
            assertEquals(2, queue.failedCount());
        }
    }

    @Test
    void closeStopsTheDeliveryThread() {
        DeliveryQueue queue = new DeliveryQueue(10, e -> Sender.Outcome.DELIVERED);
        queue.start();
        queue.close();

        boolean alive = Thread.getAllStackTraces().keySet().stream()
                .anyMatch(t -> t.getName().equals("jit-bridge-event-delivery") && t.isAlive());
        assertFalse(alive);
    }
}
