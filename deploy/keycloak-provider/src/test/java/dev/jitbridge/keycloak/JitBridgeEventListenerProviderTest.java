package dev.jitbridge.keycloak;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.reflect.Proxy;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.keycloak.events.Event;
import org.keycloak.events.EventType;
import org.keycloak.events.admin.AdminEvent;
import org.keycloak.events.admin.OperationType;
import org.keycloak.events.admin.ResourceType;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakTransaction;
import org.keycloak.models.KeycloakTransactionManager;
import org.keycloak.models.RealmModel;
import org.keycloak.models.RealmProvider;

/**
 * The Keycloak-facing provider with a stand-in session: only the three calls it makes are
 * answered (transaction manager, realm lookup by id, realm name), everything else fails loudly.
 */
class JitBridgeEventListenerProviderTest {

    private final List<KeycloakTransaction> afterCompletion = new ArrayList<>();
    private final List<BridgeEvent> queued = new ArrayList<>();
    private final ListenerFailures failures = new ListenerFailures();

    @SuppressWarnings("unchecked")
    private static <T> T stub(Class<T> type, java.util.function.Function<String, Object> answers) {
        return (T) Proxy.newProxyInstance(type.getClassLoader(), new Class<?>[] {type}, (proxy, method, args) -> {
            Object answer = answers.apply(method.getName());
            if (answer == null) {
                throw new UnsupportedOperationException(method.getName() + " is not expected here");
            }
            return answer instanceof Runnable r ? runAndReturnNothing(r) : answer;
        });
    }

    private static Object runAndReturnNothing(Runnable r) {
        r.run();
        return null;
    }

    private KeycloakSession session() {
        RealmModel realm = stub(RealmModel.class, name -> name.equals("getName") ? "Acme Corp" : null);
        RealmProvider realms = stub(RealmProvider.class, name -> name.equals("getRealm") ? realm : null);
        KeycloakTransactionManager[] manager = new KeycloakTransactionManager[1];
        manager[0] = (KeycloakTransactionManager) Proxy.newProxyInstance(
                KeycloakTransactionManager.class.getClassLoader(),
                new Class<?>[] {KeycloakTransactionManager.class},
                (proxy, method, args) -> switch (method.getName()) {
                    case "isActive" -> true;
                    case "enlistAfterCompletion" -> {
                        KeycloakTransaction tx = (KeycloakTransaction) args[0];
                        tx.begin();
                        afterCompletion.add(tx);
                        yield null;
                    }
                    default -> throw new UnsupportedOperationException(method.getName());
                });
        return stub(KeycloakSession.class, name -> switch (name) {
            case "getTransactionManager" -> manager[0];
            case "realms" -> realms;
            default -> null;
        });
    }

    private JitBridgeEventListenerProvider provider() {
        return new JitBridgeEventListenerProvider(session(), EventSelection.defaults(), queued::add, failures);
    }

    private static Event login() {
        Event event = new Event();
        event.setId("ev-login");
        event.setTime(1767225600123L);
        event.setType(EventType.LOGIN);
        event.setRealmId("3b9a-realm-id");
        event.setUserId("u-1");
        return event;
    }

    private static String body(BridgeEvent event) {
        return new String(event.body(), StandardCharsets.UTF_8);
    }

    @Test
    void queuesALoginOnlyAfterCommit() {
        JitBridgeEventListenerProvider provider = provider();
        provider.onEvent(login());

        assertEquals(List.of(), queued);
        afterCompletion.get(0).commit();

        assertEquals(1, queued.size());
        assertEquals(
                "{\"id\":\"ev-login\",\"time\":1767225600123,\"realm\":\"Acme Corp\",\"kind\":\"user\","
                        + "\"type\":\"LOGIN\",\"user_id\":\"u-1\",\"operation\":null,\"resource_type\":null,"
                        + "\"resource_path\":null}",
                body(queued.get(0)));
    }

    @Test
    void discardsEventsOfARolledBackTransaction() {
        JitBridgeEventListenerProvider provider = provider();
        provider.onEvent(login());
        afterCompletion.get(0).rollback();

        assertEquals(List.of(), queued);
    }

    @Test
    void enlistsOnceAndForwardsEveryEventOfTheRequest() {
        JitBridgeEventListenerProvider provider = provider();
        AdminEvent membership = new AdminEvent();
        membership.setId("ev-admin");
        membership.setTime(2L);
        membership.setRealmId("3b9a-realm-id");
        membership.setResourceType(ResourceType.GROUP_MEMBERSHIP);
        membership.setOperationType(OperationType.DELETE);
        membership.setResourcePath("users/u-2/groups/g-1");

        provider.onEvent(login());
        provider.onEvent(membership, false);
        afterCompletion.get(0).commit();

        assertEquals(1, afterCompletion.size());
        assertEquals(List.of("ev-login", "ev-admin"), queued.stream().map(BridgeEvent::id).toList());
        assertEquals(
                "{\"id\":\"ev-admin\",\"time\":2,\"realm\":\"Acme Corp\",\"kind\":\"admin\",\"type\":\"GROUP_MEMBERSHIP\","
                        + "\"user_id\":\"u-2\",\"operation\":\"DELETE\",\"resource_type\":\"GROUP_MEMBERSHIP\","
                        + "\"resource_path\":\"users/u-2/groups/g-1\"}",
                body(queued.get(1)));
    }

    @Test
    void ignoresEventsOutsideTheSelection() {
        JitBridgeEventListenerProvider provider = provider();
        Event error = login();
        error.setType(EventType.LOGIN_ERROR);
        AdminEvent roleMapping = new AdminEvent();
        roleMapping.setResourceType(ResourceType.REALM_ROLE_MAPPING);
        roleMapping.setOperationType(OperationType.CREATE);

        provider.onEvent(error);
        provider.onEvent(roleMapping, true);

        assertTrue(afterCompletion.isEmpty());
        assertTrue(queued.isEmpty());
    }

    @Test
    void neverThrowsIntoKeycloak() {
        KeycloakSession broken = stub(KeycloakSession.class, name -> null);
        JitBridgeEventListenerProvider provider =
                new JitBridgeEventListenerProvider(broken, EventSelection.defaults(), queued::add, failures);

        assertDoesNotThrow(() -> provider.onEvent(login()));
        assertTrue(queued.isEmpty());
        assertEquals(1, failures.count());
    }

    /** What Keycloak 26.x hands over: the event carries its realm's name (24.x events do not). */
    public static final class NamedRealmEvent extends Event {
        public String getRealmName() {
            return "carried-name";
        }
    }

    @Test
    void usesTheRealmNameTheEventCarriesWhenTheReleaseHasIt() {
        JitBridgeEventListenerProvider provider = provider();
        Event event = new NamedRealmEvent();
        event.setId("ev-named");
        event.setType(EventType.LOGIN);
        event.setRealmId("3b9a-realm-id");

        provider.onEvent(event);
        afterCompletion.get(0).commit();

        assertTrue(body(queued.get(0)).contains("\"realm\":\"carried-name\""), body(queued.get(0)));
    }

    @Test
    void anApiTheRunningReleaseLacksIsCountedNotThrown() {
        KeycloakSession session = stub(KeycloakSession.class, name -> {
            throw new NoSuchMethodError("'org.keycloak.models.RealmProvider org.keycloak.models.KeycloakSession.realms()'");
        });
        JitBridgeEventListenerProvider provider =
                new JitBridgeEventListenerProvider(session, EventSelection.defaults(), queued::add, failures);
        AdminEvent membership = new AdminEvent();
        membership.setId("ev-admin");
        membership.setRealmId("3b9a-realm-id");
        membership.setResourceType(ResourceType.GROUP_MEMBERSHIP);
        membership.setOperationType(OperationType.CREATE);

        assertDoesNotThrow(() -> provider.onEvent(login()));
        assertDoesNotThrow(() -> provider.onEvent(membership, false));
        assertTrue(queued.isEmpty());
        assertEquals(2, failures.count());
    }
}
