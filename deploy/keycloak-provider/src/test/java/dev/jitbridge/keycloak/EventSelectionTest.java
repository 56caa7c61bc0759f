package dev.jitbridge.keycloak;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

class EventSelectionTest {

    @Test
    void defaultsForwardTheTriggersOfTheSpec() {
        EventSelection selection = EventSelection.defaults();

        for (String type : List.of("LOGIN", "IDENTITY_PROVIDER_LOGIN", "IDENTITY_PROVIDER_FIRST_LOGIN", "REGISTER")) {
            assertTrue(selection.forwardsUserEvent(type), type);
        }
        assertTrue(selection.forwardsAdminEvent("GROUP_MEMBERSHIP", "CREATE"));
        assertTrue(selection.forwardsAdminEvent("GROUP_MEMBERSHIP", "DELETE"));
        assertTrue(selection.forwardsAdminEvent("USER", "UPDATE"));
        assertTrue(selection.forwardsAdminEvent("USER", "DELETE"));
        assertTrue(selection.forwardsAdminEvent("GROUP", "UPDATE"));
        assertTrue(selection.forwardsAdminEvent("GROUP", "DELETE"));
        for (String resource : List.of("ORGANIZATION_MEMBERSHIP", "ORGANIZATION_GROUP_MEMBERSHIP")) {
            assertTrue(selection.forwardsAdminEvent(resource, "CREATE"), resource);
            assertTrue(selection.forwardsAdminEvent(resource, "DELETE"), resource);
        }
        for (String resource : List.of("ORGANIZATION", "ORGANIZATION_GROUP")) {
            assertTrue(selection.forwardsAdminEvent(resource, "UPDATE"), resource);
            assertTrue(selection.forwardsAdminEvent(resource, "DELETE"), resource);
            assertFalse(selection.forwardsAdminEvent(resource, "CREATE"), resource);
        }
    }

    @Test
    void defaultsSkipEverythingElse() {
        EventSelection selection = EventSelection.defaults();

        assertFalse(selection.forwardsUserEvent("LOGIN_ERROR"));
        assertFalse(selection.forwardsUserEvent("REFRESH_TOKEN"));
        assertFalse(selection.forwardsUserEvent(null));
        assertFalse(selection.forwardsAdminEvent("USER", "CREATE"));
        assertFalse(selection.forwardsAdminEvent("GROUP", "CREATE"));
        assertFalse(selection.forwardsAdminEvent("REALM_ROLE_MAPPING", "CREATE"));
    }

    @Test
    void acceptsLowerCaseSpacesAndOperationWildcards() {
        EventSelection selection = EventSelection.parse(" login , realm_role_mapping:* ,");

        assertTrue(selection.forwardsUserEvent("LOGIN"));
        assertTrue(selection.forwardsAdminEvent("REALM_ROLE_MAPPING", "DELETE"));
        assertFalse(selection.forwardsAdminEvent("GROUP_MEMBERSHIP", "CREATE"));
    }

    @Test
    void rejectsAMalformedEntry() {
        IllegalArgumentException e =
                assertThrows(IllegalArgumentException.class, () -> EventSelection.parse("LOGIN,GROUP-MEMBERSHIP"));
        assertTrue(e.getMessage().contains("'GROUP-MEMBERSHIP'"), e.getMessage());
    }

    @Test
    void rejectsAnEmptyList() {
        assertThrows(IllegalArgumentException.class, () -> EventSelection.parse(" , "));
    }
}
