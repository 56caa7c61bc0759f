package dev.jitbridge.keycloak;

import java.util.function.Consumer;
import org.jboss.logging.Logger;
import org.keycloak.events.Event;
import org.keycloak.events.EventListenerProvider;
import org.keycloak.events.admin.AdminEvent;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakTransactionManager;
import org.keycloak.models.RealmModel;

/**
 * Created by Keycloak for each request. Turns the selected events into signed-ready bodies in the
 * request thread (where the realm name can still be looked up) and hands them over after commit.
 * It never throws into Keycloak: a failure here is logged and the login carries on.
 */
final class JitBridgeEventListenerProvider implements EventListenerProvider {

    private static final Logger LOG = Logger.getLogger(JitBridgeEventListenerProvider.class);

    private final KeycloakSession session;
    private final EventSelection selection;
    private final Consumer<BridgeEvent> enqueue;
    private AfterCommitForwarding afterCommit;

    JitBridgeEventListenerProvider(KeycloakSession session, EventSelection selection, Consumer<BridgeEvent> enqueue) {
        this.session = session;
        this.selection = selection;
        this.enqueue = enqueue;
    }

    @Override
    public void onEvent(Event event) {
        try {
            String type = event.getType() == null ? null : event.getType().name();
            if (!selection.forwardsUserEvent(type)) {
                return;
            }
            String realm = realmName(event.getRealmId(), event.getRealmName());
            String body = PayloadBuilder.userEvent(event.getId(), event.getTime(), realm, type, event.getUserId());
            forwardAfterCommit(BridgeEvent.of(event.getId(), "user", type, body));
        } catch (RuntimeException e) {
            LOG.warnf(e, "jit-bridge listener could not queue user event %s; the login is not affected", event.getId());
        }
    }

    @Override
    public void onEvent(AdminEvent event, boolean includeRepresentation) {
        try {
            String resourceType = event.getResourceTypeAsString();
            String operation = event.getOperationType() == null ? null : event.getOperationType().name();
            if (!selection.forwardsAdminEvent(resourceType, operation)) {
                return;
            }
            String realm = realmName(event.getRealmId(), event.getRealmName());
            String body = PayloadBuilder.adminEvent(
                    event.getId(), event.getTime(), realm, resourceType, operation, event.getResourcePath());
            forwardAfterCommit(BridgeEvent.of(event.getId(), "admin", resourceType + ":" + operation, body));
        } catch (RuntimeException e) {
            LOG.warnf(e, "jit-bridge listener could not queue admin event %s; the change is not affected", event.getId());
        }
    }

    @Override
    public void close() {
        // Nothing to release: pending events belong to the enlisted transaction.
    }

    private void forwardAfterCommit(BridgeEvent event) {
        KeycloakTransactionManager transactions = session.getTransactionManager();
        if (transactions == null || !transactions.isActive()) {
            // No transaction to wait for (the change is already final), so queue right away.
            enqueue.accept(event);
            return;
        }
        if (afterCommit == null) {
            afterCommit = new AfterCommitForwarding(enqueue);
            transactions.enlistAfterCompletion(afterCommit);
        }
        afterCommit.add(event);
    }

    /** The realm's name; the event may carry it, otherwise the session knows it by id. */
    private String realmName(String realmId, String carriedName) {
        if (carriedName != null) {
            return carriedName;
        }
        if (realmId == null) {
            return null;
        }
        RealmModel realm = session.realms().getRealm(realmId);
        return realm == null ? realmId : realm.getName();
    }
}
