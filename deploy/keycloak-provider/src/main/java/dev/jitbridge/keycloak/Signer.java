package dev.jitbridge.keycloak;

import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.util.HexFormat;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * Signs an outgoing body the way jit-bridge verifies it (docs/design.md, Listener).
 *
 * <p>The header value is {@code t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>}.
 * The timestamp is inside the signed bytes so that a captured request cannot be replayed later
 * than the bridge's 300 second window.
 */
public final class Signer {

    /** Name of the HTTP header that carries the signature. */
    public static final String HEADER = "X-JIT-Bridge-Signature";

    private static final String ALGORITHM = "HmacSHA256";

    private final SecretKeySpec key;

    public Signer(String secret) {
        if (secret == null || secret.isEmpty()) {
            throw new IllegalArgumentException("the signing secret must not be empty");
        }
        this.key = new SecretKeySpec(secret.getBytes(StandardCharsets.UTF_8), ALGORITHM);
    }

    /** The full header value for {@code body} sent at {@code unixSeconds}. */
    public String header(long unixSeconds, byte[] body) {
        return "t=" + unixSeconds + ",v1=" + signature(unixSeconds, body);
    }

    /** Lower-case hex HMAC-SHA256 over {@code "<t>.<body>"}. */
    public String signature(long unixSeconds, byte[] body) {
        Mac mac = newMac();
        mac.update((unixSeconds + ".").getBytes(StandardCharsets.US_ASCII));
        mac.update(body);
        return HexFormat.of().formatHex(mac.doFinal());
    }

    private Mac newMac() {
        try {
            Mac mac = Mac.getInstance(ALGORITHM);
            mac.init(key);
            return mac;
        } catch (GeneralSecurityException e) {
            // Every Java 17 runtime ships HmacSHA256, so this means a broken JVM, not bad input.
            throw new IllegalStateException("HmacSHA256 is not available in this JVM", e);
        }
    }

    @Override
    public String toString() {
        return "Signer[secret=***]";
    }
}
