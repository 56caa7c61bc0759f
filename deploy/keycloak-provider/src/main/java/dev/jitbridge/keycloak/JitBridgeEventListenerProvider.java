package dev.jitbridge.keycloak;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.util.function.Consumer;
import org.keycloak.events.Event;
import org.keycloak.events.EventListenerProvider;
import org.keycloak.events.admin.AdminEvent;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakTransactionManager;
import org.keycloak.models.RealmModel;

/**
 * Created by Keycloak for each request. Turns the selected events into signed-ready bodies in the
 * request thread (where the realm name can still be looked up) and hands them over after commit.
 * It never throws into Keycloak: a failure here, including a {@link LinkageError} from an API the
 * running release lacks, is logged and counted ({@link ListenerFailures}) and the login carries on.
 *
 * <p>It is compiled against the oldest supported Keycloak API. {@code getRealmName()} on events
 * exists only in newer releases, so it is looked up reflectively and the realm model is asked
 * otherwise.
 */
final class JitBridgeEventListenerProvider implements EventListenerProvider {

    /** The public no-argument {@code getRealmName()} of an event class, when it has one. */
    private static final ClassValue<Method> REALM_NAME_GETTER = new ClassValue<>() {
        @Override
        protected Method computeValue(Class<?> type) {
            try {
                Method getter = type.getMethod("getRealmName");
                return getter.getReturnType() == String.class ? getter : null;
            } catch (NoSuchMethodException | SecurityException e) {
                return null;
            }
        }
    };

    private final KeycloakSession session;
    private final EventSelection selection;
    private final Consumer<BridgeEvent> enqueue;
    private final ListenerFailures failures;
    private AfterCommitForwarding afterCommit;

    JitBridgeEventListenerProvider(
            KeycloakSession session,
            EventSelection selection,
            Consumer<BridgeEvent> enqueue,
            ListenerFailures failures) {
        this.session = session;
        this.selection = selection;
        this.enqueue = enqueue;
        this.failures = failures;
    }

    @Override
    public void onEvent(Event event) {
        try {
            String type = event.getType() == null ? null : event.getType().name();
            if (!selection.forwardsUserEvent(type)) {
                return;
            }
            String realm = realmName(event, event.getRealmId());
            String body = PayloadBuilder.userEvent(event.getId(), event.getTime(), realm, type, event.getUserId());
            forwardAfterCommit(BridgeEvent.of(event.getId(), "user", type, body));
        } catch (RuntimeException | LinkageError e) {
            failures.record("user event " + describe(event.getType()) + " (id " + event.getId() + ")", e);
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
            String realm = realmName(event, event.getRealmId());
            String body = PayloadBuilder.adminEvent(
                    event.getId(), event.getTime(), realm, resourceType, operation, event.getResourcePath());
            forwardAfterCommit(BridgeEvent.of(event.getId(), "admin", resourceType + ":" + operation, body));
        } catch (RuntimeException | LinkageError e) {
            failures.record("admin event " + describe(event.getOperationType()) + " (id " + event.getId() + ")", e);
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

    /** The realm's name; newer events carry it, otherwise the session knows it by id. */
    private String realmName(Object event, String realmId) {
        String carriedName = carriedRealmName(event);
        if (carriedName != null) {
            return carriedName;
        }
        if (realmId == null) {
            return null;
        }
        RealmModel realm = session.realms().getRealm(realmId);
        return realm == null ? realmId : realm.getName();
    }

    private static String carriedRealmName(Object event) {
        Method getter = REALM_NAME_GETTER.get(event.getClass());
        if (getter == null) {
            return null;
        }
        try {
            return (String) getter.invoke(event);
        } catch (IllegalAccessException | InvocationTargetException e) {
            return null;
        }
    }

    private static String describe(Enum<?> value) {
        return value == null ? "?" : value.name();
    }
}
