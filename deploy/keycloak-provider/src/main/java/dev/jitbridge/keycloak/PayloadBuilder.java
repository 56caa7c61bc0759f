package dev.jitbridge.keycloak;

/**
 * Builds the JSON body of docs/design.md, Listener from plain values, with no Keycloak classes, so the wire
 * format can be tested on its own.
 *
 * <p>Keys, in order: {@code id, time, realm, kind, type, user_id, operation, resource_type,
 * resource_path}. {@code time} is Keycloak's epoch milliseconds. Absent values are JSON
 * {@code null}.
 */
public final class PayloadBuilder {

    private static final String USERS_PREFIX = "users/";

    private PayloadBuilder() {}

    /** Body for a user ("login") event such as {@code LOGIN}. */
    public static String userEvent(String id, long time, String realm, String type, String userId) {
        return json(id, time, realm, "user", type, userId, null, null, null);
    }

    /**
     * Body for an admin event. {@code type} is the resource type, so the bridge can route on it
     * alone; the subject user comes from the resource path.
     */
    public static String adminEvent(
            String id, long time, String realm, String resourceType, String operation, String resourcePath) {
        return json(
                id,
                time,
                realm,
                "admin",
                resourceType,
                subjectUserId(resourcePath),
                operation,
                resourceType,
                resourcePath);
    }

    /**
     * The user an admin event is about: the id in {@code users/{id}} or {@code users/{id}/...},
     * otherwise {@code null} (for example {@code groups/{id}}).
     */
    public static String subjectUserId(String resourcePath) {
        if (resourcePath == null || !resourcePath.startsWith(USERS_PREFIX)) {
            return null;
        }
        String rest = resourcePath.substring(USERS_PREFIX.length());
        int slash = rest.indexOf('/');
        String id = slash < 0 ? rest : rest.substring(0, slash);
        return id.isEmpty() ? null : id;
    }

    private static String json(
            String id,
            long time,
            String realm,
            String kind,
            String type,
            String userId,
            String operation,
            String resourceType,
            String resourcePath) {
        StringBuilder out = new StringBuilder(256);
        out.append('{');
        field(out, "id", id).append(',');
        out.append("\"time\":").append(time).append(',');
        field(out, "realm", realm).append(',');
        field(out, "kind", kind).append(',');
        field(out, "type", type).append(',');
        field(out, "user_id", userId).append(',');
        field(out, "operation", operation).append(',');
        field(out, "resource_type", resourceType).append(',');
        field(out, "resource_path", resourcePath);
        return out.append('}').toString();
    }

    private static StringBuilder field(StringBuilder out, String name, String value) {
        out.append('"').append(name).append("\":");
        if (value == null) {
            return out.append("null");
        }
        return appendString(out, value);
    }

    /** JSON string literal per RFC 8259; non-ASCII stays as UTF-8, control characters are escaped. */
    static StringBuilder appendString(StringBuilder out, String value) {
        out.append('"');
        for (int i = 0; i < value.length(); i++) {
            char c = value.charAt(i);
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                case '\b' -> out.append("\\b");
                case '\f' -> out.append("\\f");
                default -> {
                    // U+2028/2029 are valid JSON but break JavaScript consumers; escape them too.
                    if (c < 0x20 || c == '\u2028' || c == '\u2029') {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
                }
            }
        }
        return out.append('"');
    }
}
