package dev.jitbridge.keycloak;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

class PayloadBuilderTest {

    private static final String USER = "8d2f6c1e-1111-4222-8333-944455556666";

    @Test
    void userEventHasNullAdminFields() {
        String json = PayloadBuilder.userEvent("ev-1", 1767225600123L, "acme", "LOGIN", USER);

        assertEquals(
                "{\"id\":\"ev-1\",\"time\":1767225600123,\"realm\":\"acme\",\"kind\":\"user\",\"type\":\"LOGIN\","
                        + "\"user_id\":\"" + USER + "\",\"operation\":null,\"resource_type\":null,"
                        + "\"resource_path\":null}",
                json);
    }

    @Test
    void adminMembershipEventMatchesTheSharedVectorByteForByte() throws Exception {
        String json = PayloadBuilder.adminEvent(
                "4f1c2e9a-0000-4000-8000-000000000001",
                1767225600123L,
                "Zürich \"west\"/eu ✓",
                "GROUP_MEMBERSHIP",
                "CREATE",
                "users/" + USER + "/groups/aa11bb22-3333-4444-5555-666677778888");

        assertArrayEquals(SignatureVector.load().body(), json.getBytes(StandardCharsets.UTF_8));
    }

    @Test
    void groupEventHasNoSubjectUser() {
        String json = PayloadBuilder.adminEvent("ev-2", 5L, "acme", "GROUP", "DELETE", "groups/g-1");

        assertEquals(
                "{\"id\":\"ev-2\",\"time\":5,\"realm\":\"acme\",\"kind\":\"admin\",\"type\":\"GROUP\","
                        + "\"user_id\":null,\"operation\":\"DELETE\",\"resource_type\":\"GROUP\","
                        + "\"resource_path\":\"groups/g-1\"}",
                json);
    }

    @Test
    void subjectUserComesFromTheUsersSegmentOfTheResourcePath() {
        assertEquals(USER, PayloadBuilder.subjectUserId("users/" + USER));
        assertEquals(USER, PayloadBuilder.subjectUserId("users/" + USER + "/groups/g-1"));
        assertEquals(USER, PayloadBuilder.subjectUserId("users/" + USER + "/role-mappings/realm"));
        assertNull(PayloadBuilder.subjectUserId("groups/g-1"));
        assertNull(PayloadBuilder.subjectUserId("clients/c-1/users/x"));
        assertNull(PayloadBuilder.subjectUserId("users/"));
        assertNull(PayloadBuilder.subjectUserId("users"));
        assertNull(PayloadBuilder.subjectUserId(null));
    }

    @Test
    void escapesQuotesBackslashesAndControlCharacters() {
        String json = PayloadBuilder.userEvent("a\"b\\c", 1L, "line\nbreak\ttab\u0001\u2028", "LOGIN", null);

        assertEquals(
                "{\"id\":\"a\\\"b\\\\c\",\"time\":1,\"realm\":\"line\\nbreak\\ttab\\u0001\\u2028\","
                        + "\"kind\":\"user\",\"type\":\"LOGIN\",\"user_id\":null,\"operation\":null,"
                        + "\"resource_type\":null,\"resource_path\":null}",
                json);
    }

    @Test
    void keepsUnicodeAndSlashesAsUtf8() {
        String json = PayloadBuilder.userEvent("ev", 1L, "東京/realm 😀", "LOGIN", "u/1");

        assertEquals(
                "{\"id\":\"ev\",\"time\":1,\"realm\":\"東京/realm 😀\",\"kind\":\"user\",\"type\":\"LOGIN\","
                        + "\"user_id\":\"u/1\",\"operation\":null,\"resource_type\":null,\"resource_path\":null}",
                json);
    }
}
