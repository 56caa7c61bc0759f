package dev.jitbridge.keycloak;

import java.time.Clock;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import org.jboss.logging.Logger;
import org.keycloak.Config;
import org.keycloak.events.Event;
import org.keycloak.events.EventListenerProvider;
import org.keycloak.events.EventListenerProviderFactory;
import org.keycloak.events.admin.AdminEvent;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakSessionFactory;
import org.keycloak.provider.ProviderConfigProperty;
import org.keycloak.provider.ProviderConfigurationBuilder;

/**
 * The {@code jit-bridge} event listener: one per Keycloak server. It owns the delivery queue and
 * its thread, started in {@link #postInit} and stopped in {@link #close}.
 *
 * <p>A configuration error never stops Keycloak: the listener logs what to fix and drops events,
 * and, in enhanced mode, the bridge's scheduled reconcile keeps access correct meanwhile (a user
 * who logs in for the first time is provisioned at a login the bridge hears about).
 */
public final class JitBridgeEventListenerProviderFactory implements EventListenerProviderFactory {

    public static final String ID = "jit-bridge";

    private static final Logger LOG = Logger.getLogger(JitBridgeEventListenerProviderFactory.class);

    /** {@code ProviderConfigProperty.INTEGER_TYPE} of Keycloak 25+; Keycloak 24 has no such constant. */
    private static final String INTEGER_TYPE = "Integer";

    private ListenerSettings settings;
    private String configurationError;
    private DeliveryQueue queue;
    private final AtomicBoolean reportedDisabled = new AtomicBoolean();
    private final ListenerFailures failures = new ListenerFailures();

    @Override
    public String getId() {
        return ID;
    }

    @Override
    public void init(Config.Scope config) {
        try {
            settings = ListenerSettings.read(SpiOptions.forKeycloak(config::get));
            LOG.infof("jit-bridge event listener configured: %s", settings);
        } catch (IllegalArgumentException e) {
            configurationError = e.getMessage();
            LOG.errorf("jit-bridge event listener is disabled and will drop events: %s", configurationError);
        }
    }

    @Override
    public void postInit(KeycloakSessionFactory factory) {
        if (settings == null) {
            return;
        }
        Sender sender = new Sender(
                settings.url(),
                new Signer(settings.secret()),
                new JdkHttpTransport(settings.connectTimeout(), settings.requestTimeout()),
                RetryPolicy.withMaxAttempts(settings.maxAttempts()),
                Clock.systemUTC(),
                delay -> Thread.sleep(delay.toMillis()));
        queue = new DeliveryQueue(settings.queueSize(), sender::send);
        queue.start();
    }

    @Override
    public EventListenerProvider create(KeycloakSession session) {
        if (queue == null) {
            return new Disabled();
        }
        return new JitBridgeEventListenerProvider(session, settings.eventSelection(), queue::offer, failures);
    }

    @Override
    public void close() {
        if (queue != null) {
            queue.close();
            queue = null;
        }
        if (failures.count() > 0) {
            LOG.warnf("jit-bridge listener could not forward %d event(s) since start", failures.count());
        }
    }

    @Override
    public List<ProviderConfigProperty> getConfigMetadata() {
        return ProviderConfigurationBuilder.create()
                .property().name(ListenerSettings.URL).type(ProviderConfigProperty.STRING_TYPE)
                .helpText("jit-bridge webhook URL, e.g. https://bridge.example/webhooks/keycloak (required)").add()
                .property().name(ListenerSettings.SECRET).type(ProviderConfigProperty.PASSWORD).secret(true)
                .helpText("HMAC secret shared with the bridge's webhook_secret (required)").add()
                .property().name(ListenerSettings.CONNECT_TIMEOUT_MS).type(INTEGER_TYPE)
                .helpText("TCP connect timeout in ms (default " + ListenerSettings.DEFAULT_CONNECT_TIMEOUT_MS + ")").add()
                .property().name(ListenerSettings.REQUEST_TIMEOUT_MS).type(INTEGER_TYPE)
                .helpText("Timeout of one POST in ms (default " + ListenerSettings.DEFAULT_REQUEST_TIMEOUT_MS + ")").add()
                .property().name(ListenerSettings.QUEUE_SIZE).type(INTEGER_TYPE)
                .helpText("Events held in memory while the bridge is slow; more are dropped (default "
                        + DeliveryQueue.DEFAULT_CAPACITY + ")").add()
                .property().name(ListenerSettings.MAX_ATTEMPTS).type(INTEGER_TYPE)
                .helpText("Delivery attempts per event, first included (default " + RetryPolicy.DEFAULT_MAX_ATTEMPTS + ")").add()
                .property().name(ListenerSettings.EVENT_TYPES).type(ProviderConfigProperty.STRING_TYPE)
                .helpText("Comma list of forwarded events: LOGIN for user events, GROUP_MEMBERSHIP:CREATE for admin "
                        + "events (default " + EventSelection.DEFAULT + ")").add()
                .build();
    }

    /** Stands in when the configuration is unusable: drops events, says so once per server. */
    private final class Disabled implements EventListenerProvider {

        @Override
        public void onEvent(Event event) {
            reportDropped();
        }

        @Override
        public void onEvent(AdminEvent event, boolean includeRepresentation) {
            reportDropped();
        }

        @Override
        public void close() {
            // nothing held
        }

        private void reportDropped() {
            if (reportedDisabled.compareAndSet(false, true)) {
                LOG.errorf("jit-bridge event listener is enabled in a realm but not configured, so events are "
                        + "dropped: %s", configurationError);
            }
        }
    }
}
