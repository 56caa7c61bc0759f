package dev.jitbridge.keycloak;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

class SignerTest {

    private static final String SECRET = "jit-bridge-test-secret";
    // HMAC-SHA256 of the vector computed independently with Python's hmac module.
    private static final String KNOWN_SIGNATURE = "a37b1883c37a7654f1ea27ef839ed1ea26bb99cdaa9a6b7c817fd8152531611f";

    @Test
    void signsTheSharedVectorExactly() throws Exception {
        SignatureVector vector = SignatureVector.load();
        Signer signer = new Signer(vector.secret());

        assertEquals(KNOWN_SIGNATURE, vector.signature());
        assertEquals(vector.signature(), signer.signature(vector.timestamp(), vector.body()));
        assertEquals(vector.header(), signer.header(vector.timestamp(), vector.body()));
    }

    @Test
    void headerHasTimestampAndLowercaseHexSignature() {
        String header = new Signer(SECRET).header(1700000000L, "{}".getBytes(StandardCharsets.UTF_8));

        assertTrue(header.matches("t=1700000000,v1=[0-9a-f]{64}"), header);
    }

    @Test
    void timestampIsPartOfTheSignedBytes() {
        Signer signer = new Signer(SECRET);
        byte[] body = "{}".getBytes(StandardCharsets.UTF_8);

        assertNotEquals(signer.signature(1700000000L, body), signer.signature(1700000001L, body));
    }

    @Test
    void differentSecretGivesDifferentSignature() {
        byte[] body = "{}".getBytes(StandardCharsets.UTF_8);

        assertNotEquals(new Signer("a").signature(1L, body), new Signer("b").signature(1L, body));
    }

    @Test
    void refusesAnEmptySecret() {
        assertThrows(IllegalArgumentException.class, () -> new Signer(""));
    }

    @Test
    void neverPrintsTheSecret() {
        assertFalse(new Signer(SECRET).toString().contains(SECRET));
    }
}
