// Produces test vectors with Spring Cloud Config's algorithms and parameters, written with the JDK's
// own JCE (the same primitives spring-security-crypto and spring-security-rsa call):
//   AesBytesEncryptor (Encryptors.standard / Encryptors.stronger): PBKDF2WithHmacSHA1, 1024 rounds,
//   256-bit key, salt hex "deadbeef", a 16-byte random IV in front; CBC/PKCS5Padding or GCM/NoPadding.
//   HexEncodingTextEncryptor: lowercase hex. RsaSecretEncryptor: 2-byte length, RSA ("RSA" =
//   PKCS#1 v1.5) wrapped 16 random bytes, then AesBytesEncryptor keyed by their hex; base64.
// Run: java SpringVectors.java > spring_vectors.json
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.security.*;
import java.util.Base64;
import java.util.HexFormat;
import javax.crypto.*;
import javax.crypto.spec.*;

public class SpringVectors {
    static SecretKey key(String password, String salt) throws Exception {
        PBEKeySpec spec = new PBEKeySpec(password.toCharArray(), HexFormat.of().parseHex(salt), 1024, 256);
        SecretKey k = SecretKeyFactory.getInstance("PBKDF2WithHmacSHA1").generateSecret(spec);
        return new SecretKeySpec(k.getEncoded(), "AES");
    }

    static byte[] aes(String password, String salt, byte[] plain, boolean gcm) throws Exception {
        byte[] iv = new byte[16];
        new SecureRandom().nextBytes(iv);
        Cipher c = Cipher.getInstance(gcm ? "AES/GCM/NoPadding" : "AES/CBC/PKCS5Padding");
        c.init(Cipher.ENCRYPT_MODE, key(password, salt),
               gcm ? new GCMParameterSpec(128, iv) : new IvParameterSpec(iv));
        byte[] body = c.doFinal(plain);
        byte[] out = new byte[16 + body.length];
        System.arraycopy(iv, 0, out, 0, 16);
        System.arraycopy(body, 0, out, 16, body.length);
        return out;
    }

    static String rsa(KeyPair pair, String salt, String text, boolean strong) throws Exception {
        byte[] random = new byte[16];
        new SecureRandom().nextBytes(random);
        Cipher c = Cipher.getInstance("RSA");
        c.init(Cipher.ENCRYPT_MODE, pair.getPublic());
        byte[] secret = c.doFinal(random);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write((secret.length >> 8) & 0xFF);
        out.write(secret.length & 0xFF);
        out.write(secret);
        out.write(aes(HexFormat.of().formatHex(random), salt, text.getBytes(StandardCharsets.UTF_8), strong));
        return Base64.getEncoder().encodeToString(out.toByteArray());
    }

    public static void main(String[] args) throws Exception {
        String symmetricKey = "migrate-me-without-re-encrypting";
        String plain = "jdbc-p@ss wörd";
        KeyPairGenerator gen = KeyPairGenerator.getInstance("RSA");
        gen.initialize(2048);
        KeyPair pair = gen.generateKeyPair();
        String pem = ("-----BEGIN PRIVATE KEY-----\n"
            + Base64.getMimeEncoder(64, "\n".getBytes()).encodeToString(pair.getPrivate().getEncoded())
            + "\n-----END PRIVATE KEY-----\n").replace("\n", "\\n");
        System.out.println("{");
        System.out.println("  \"plaintext\": \"" + plain + "\",");
        System.out.println("  \"symmetric_key\": \"" + symmetricKey + "\",");
        System.out.println("  \"salt\": \"deadbeef\",");
        System.out.println("  \"aes_cbc_hex\": \""
            + HexFormat.of().formatHex(aes(symmetricKey, "deadbeef", plain.getBytes(StandardCharsets.UTF_8), false)) + "\",");
        System.out.println("  \"rsa_private_key_pem\": \"" + pem + "\",");
        System.out.println("  \"rsa_cbc_base64\": \"" + rsa(pair, "deadbeef", plain, false) + "\",");
        System.out.println("  \"rsa_gcm_base64\": \"" + rsa(pair, "deadbeef", plain, true) + "\"");
        System.out.println("}");
    }
}
