package dev.jitbridge.keycloak;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** The shared vector in src/test/resources/signature-vector.json (also read by the Python verifier tests). */
record SignatureVector(String secret, long timestamp, byte[] body, String signature, String header) {

    static SignatureVector load() throws IOException {
        String json;
        try (InputStream in = SignatureVector.class.getResourceAsStream("/signature-vector.json")) {
            if (in == null) {
                throw new IOException("signature-vector.json is missing from the test resources");
            }
            json = new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
        return new SignatureVector(
                string(json, "secret"),
                Long.parseLong(number(json, "timestamp")),
                Base64.getDecoder().decode(string(json, "body_base64")),
                string(json, "signature"),
                string(json, "header"));
    }

    // The fields read here hold no escapes, so a pattern is enough and no JSON library is needed.
    private static String string(String json, String key) {
        return find(json, "\"" + key + "\"\\s*:\\s*\"([^\"\\\\]*)\"", key);
    }

    private static String number(String json, String key) {
        return find(json, "\"" + key + "\"\\s*:\\s*(\\d+)", key);
    }

    private static String find(String json, String regex, String key) {
        Matcher m = Pattern.compile(regex).matcher(json);
        if (!m.find()) {
            throw new IllegalStateException("signature-vector.json has no field " + key);
        }
        return m.group(1);
    }
}
