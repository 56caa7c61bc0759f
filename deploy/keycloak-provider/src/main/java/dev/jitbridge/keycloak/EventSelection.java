package dev.jitbridge.keycloak;

import java.util.LinkedHashSet;
import java.util.Locale;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * Which Keycloak events are forwarded (docs/design.md, Triggers).
 *
 * <p>Written as a comma list: a user event is its {@code EventType} name ({@code LOGIN}); an admin
 * event is {@code RESOURCE_TYPE:OPERATION} ({@code GROUP_MEMBERSHIP:CREATE}), where the operation
 * may be {@code *} for all of them.
 */
public final class EventSelection {

    /** The triggers of docs/design.md, Triggers. */
    public static final String DEFAULT =
            "LOGIN,IDENTITY_PROVIDER_LOGIN,IDENTITY_PROVIDER_FIRST_LOGIN,REGISTER,"
                    + "GROUP_MEMBERSHIP:CREATE,GROUP_MEMBERSHIP:DELETE,USER:UPDATE,USER:DELETE,"
                    + "GROUP:UPDATE,GROUP:DELETE,"
                    // Keycloak Organizations (26+); older versions never emit these types.
                    + "ORGANIZATION_MEMBERSHIP:CREATE,ORGANIZATION_MEMBERSHIP:DELETE,"
                    + "ORGANIZATION_GROUP_MEMBERSHIP:CREATE,ORGANIZATION_GROUP_MEMBERSHIP:DELETE,"
                    + "ORGANIZATION:UPDATE,ORGANIZATION:DELETE,"
                    + "ORGANIZATION_GROUP:UPDATE,ORGANIZATION_GROUP:DELETE";

    private static final Pattern NAME = Pattern.compile("[A-Z][A-Z0-9_]*");
    private static final String ANY_OPERATION = "*";

    private final Set<String> userTypes;
    private final Set<String> adminTypes;

    private EventSelection(Set<String> userTypes, Set<String> adminTypes) {
        this.userTypes = Set.copyOf(userTypes);
        this.adminTypes = Set.copyOf(adminTypes);
    }

    public static EventSelection defaults() {
        return parse(DEFAULT);
    }

    /**
     * Parses the {@code event-types} option. Names are case-insensitive; blanks between commas are
     * ignored.
     *
     * @throws IllegalArgumentException naming the entry that is not a valid event type
     */
    public static EventSelection parse(String list) {
        Set<String> user = new LinkedHashSet<>();
        Set<String> admin = new LinkedHashSet<>();
        for (String raw : list.split(",")) {
            String entry = raw.trim().toUpperCase(Locale.ROOT);
            if (entry.isEmpty()) {
                continue;
            }
            int colon = entry.indexOf(':');
            if (colon < 0) {
                requireName(entry, raw);
                user.add(entry);
            } else {
                String resource = entry.substring(0, colon);
                String operation = entry.substring(colon + 1);
                requireName(resource, raw);
                if (!ANY_OPERATION.equals(operation)) {
                    requireName(operation, raw);
                }
                admin.add(resource + ":" + operation);
            }
        }
        if (user.isEmpty() && admin.isEmpty()) {
            throw new IllegalArgumentException("event-types lists no event types; leave it unset for the defaults");
        }
        return new EventSelection(user, admin);
    }

    public boolean forwardsUserEvent(String type) {
        return type != null && userTypes.contains(type);
    }

    public boolean forwardsAdminEvent(String resourceType, String operation) {
        return resourceType != null
                && operation != null
                && (adminTypes.contains(resourceType + ":" + operation)
                        || adminTypes.contains(resourceType + ":" + ANY_OPERATION));
    }

    private static void requireName(String name, String entry) {
        if (!NAME.matcher(name).matches()) {
            throw new IllegalArgumentException("event-types entry '" + entry.trim()
                    + "' is not an event type; write LOGIN for a user event or GROUP_MEMBERSHIP:CREATE "
                    + "(or GROUP_MEMBERSHIP:*) for an admin event");
        }
    }

    @Override
    public String toString() {
        return "user=" + userTypes + ", admin=" + adminTypes;
    }
}
