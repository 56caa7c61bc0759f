package dev.jitbridge.keycloak;

import java.util.function.Function;
import org.jboss.logging.Logger;

/**
 * Looks up one listener option in both spellings Keycloak has used for SPI options.
 *
 * <p>Keycloak 26.3 introduced {@code --spi-events-listener--jit-bridge--url} (double dashes
 * around the provider id) and still resolves the older {@code --spi-events-listener-jit-bridge-url};
 * Keycloak 24 to 26.2 resolve only the older spelling and silently ignore the newer one. So the
 * value Keycloak hands over ({@code Config.Scope}) comes first, and when it has none the raw
 * configuration (command line, {@code KC_SPI_…} variables, {@code keycloak.conf}) is asked for
 * both property names. Either spelling therefore works on every supported release.
 */
final class SpiOptions implements Function<String, String> {

    static final String NEW_PREFIX = "kc.spi-events-listener--jit-bridge--";
    static final String LEGACY_PREFIX = "kc.spi-events-listener-jit-bridge-";

    private static final Logger LOG = Logger.getLogger(SpiOptions.class);

    private final Function<String, String> scope;
    private final Function<String, String> raw;

    SpiOptions(Function<String, String> scope, Function<String, String> raw) {
        this.scope = scope;
        this.raw = raw;
    }

    /** Keycloak's own scope first, then MicroProfile Config (shipped by every Quarkus-based release). */
    static SpiOptions forKeycloak(Function<String, String> scope) {
        return new SpiOptions(scope, SpiOptions::microProfileValue);
    }

    @Override
    public String apply(String name) {
        String value = scope.apply(name);
        if (present(value)) {
            return value;
        }
        value = raw.apply(NEW_PREFIX + name);
        if (present(value)) {
            return value;
        }
        return raw.apply(LEGACY_PREFIX + name);
    }

    private static boolean present(String value) {
        return value != null && !value.isBlank();
    }

    private static String microProfileValue(String property) {
        try {
            return org.eclipse.microprofile.config.ConfigProvider.getConfig()
                    .getOptionalValue(property, String.class)
                    .orElse(null);
        } catch (RuntimeException | LinkageError e) {
            // No MicroProfile Config here: only the spelling Keycloak resolves itself works.
            LOG.debugf(e, "jit-bridge listener cannot read %s from the raw configuration", property);
            return null;
        }
    }
}
