package dev.jitbridge.keycloak;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import org.keycloak.models.AbstractKeycloakTransaction;

/**
 * Holds the events of one Keycloak request until its transaction ends: on commit they go to the
 * delivery queue, on rollback they are discarded, so the bridge never hears about a change that
 * did not happen.
 */
final class AfterCommitForwarding extends AbstractKeycloakTransaction {

    private final Consumer<BridgeEvent> enqueue;
    private final List<BridgeEvent> pending = new ArrayList<>();

    AfterCommitForwarding(Consumer<BridgeEvent> enqueue) {
        this.enqueue = enqueue;
    }

    void add(BridgeEvent event) {
        pending.add(event);
    }

    @Override
    protected void commitImpl() {
        // enqueue is DeliveryQueue.offer: it never blocks and never throws on a full queue.
        pending.forEach(enqueue);
        pending.clear();
    }

    @Override
    protected void rollbackImpl() {
        pending.clear();
    }
}
