/*
 * perper fabric: one local Apache Ignite 2.x server node for development and tests.
 *
 * Single-file Java program, run in source mode (no build step):
 *
 *   java <options from perper.fabric.java_options()> -cp 'LIB/*' perper/fabric/Node.java \
 *       --port 10800 --discovery-port 47500 --communication-port 47100 \
 *       --work-dir fabric/work/10800 --nodes 1
 *
 * Everything is configured programmatically (no Spring XML) and bound to 127.0.0.1 only:
 * TCP discovery with a static IP finder over 127.0.0.1:<discovery-port>..+9 (no multicast),
 * TCP communication on 127.0.0.1:<communication-port>, the thin-client connector on
 * 127.0.0.1:<port>. The legacy REST/binary connector (11211), peer class loading, metric
 * exporters and the update notifier are all off, so the node never reaches beyond loopback.
 *
 * The node creates the caches perper needs (perper_segments, perper_meta) at start. With native
 * persistence (the default) a brand-new cluster starts INACTIVE; every node waits until --nodes
 * server nodes have joined and then activates the cluster itself (see activateWhenComplete).
 *
 * SIGTERM (or Ctrl-C) stops the node cleanly: the shutdown hook stops Ignite, which writes a
 * checkpoint when persistence is on, and the JVM exits.
 *
 * Options (all optional):
 *   --port N                 thin-client port (default 10800); also names the node
 *   --discovery-port N       first port of the discovery range N..N+9 (default 47500)
 *   --communication-port N   TCP communication port (default 47100)
 *   --work-dir DIR           Ignite work directory (default ./work/<port>)
 *   --nodes N                number of server nodes the cluster is expected to have (default 1)
 *   --backups N              backups for the perper caches (default 0 if --nodes is 1, else 1)
 *   --memory-mb N            max size of the default data region in MiB (default 256)
 *   --no-persistence         pure in-memory node (cluster is active immediately)
 *   --wal-segment-mb N       WAL segment size in MiB (default 16; 4 segments are preallocated)
 *   --auth                   thin clients must log in (needs persistence). The user comes from
 *                            $PERPER_FABRIC_USER / $PERPER_FABRIC_PASSWORD (never argv): created,
 *                            or its password set, once the cluster is ACTIVE. Without them only
 *                            Ignite's default user ignite/ignite exists.
 *   --tls-keystore FILE      the thin-client port speaks TLS only, with the key in FILE (a JKS or
 *                            PKCS#12 keystore, e.g. made by keytool); its password comes from
 *                            $PERPER_FABRIC_KEYSTORE_PASSWORD. Discovery and communication stay on
 *                            loopback without TLS.
 */

import java.io.File;
import java.util.UUID;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.ignite.Ignite;
import org.apache.ignite.IgniteLogger;
import org.apache.ignite.IgniteCluster;
import org.apache.ignite.IgniteState;
import org.apache.ignite.Ignition;
import org.apache.ignite.cache.CacheAtomicityMode;
import org.apache.ignite.cache.CacheMode;
import org.apache.ignite.cache.CacheWriteSynchronizationMode;
import org.apache.ignite.cache.PartitionLossPolicy;
import org.apache.ignite.cache.affinity.rendezvous.RendezvousAffinityFunction;
import org.apache.ignite.cluster.BaselineNode;
import org.apache.ignite.cluster.ClusterNode;
import org.apache.ignite.cluster.ClusterState;
import org.apache.ignite.configuration.CacheConfiguration;
import org.apache.ignite.configuration.ClientConnectorConfiguration;
import org.apache.ignite.configuration.DataRegionConfiguration;
import org.apache.ignite.configuration.DataStorageConfiguration;
import org.apache.ignite.configuration.IgniteConfiguration;
import org.apache.ignite.configuration.WALMode;
import org.apache.ignite.internal.IgniteEx;
import org.apache.ignite.internal.processors.security.IgniteSecurity;
import org.apache.ignite.internal.processors.security.OperationSecurityContext;
import org.apache.ignite.internal.processors.security.SecurityContext;
import org.apache.ignite.plugin.security.AuthenticationContext;
import org.apache.ignite.plugin.security.SecurityCredentials;
import org.apache.ignite.plugin.security.SecuritySubjectType;
import org.apache.ignite.spi.communication.tcp.TcpCommunicationSpi;
import org.apache.ignite.ssl.SslContextFactory;
import org.apache.ignite.spi.discovery.tcp.TcpDiscoverySpi;
import org.apache.ignite.spi.discovery.tcp.ipfinder.vm.TcpDiscoveryVmIpFinder;

public class Node {
    static final String HOST = "127.0.0.1";
    static final String SEGMENTS_CACHE = "perper_segments";
    static final String META_CACHE = "perper_meta";
    static final int PARTITIONS = 64;
    static final int DISCOVERY_RANGE = 10;
    static final String TAG = "[perper-fabric] ";

    public static void main(String[] args) throws Exception {
        Options opts = Options.parse(args);

        // Never reach the internet, never print ASCII banners or tuning advice.
        System.setProperty("IGNITE_UPDATE_NOTIFIER", "false");
        System.setProperty("IGNITE_NO_ASCII", "true");
        System.setProperty("IGNITE_PERFORMANCE_SUGGESTIONS_DISABLED", "true");
        System.setProperty("IGNITE_QUIET", "false");
        // We install our own shutdown hook so SIGTERM is logged and handled deterministically.
        System.setProperty("IGNITE_NO_SHUTDOWN_HOOK", "true");
        System.setProperty("java.net.preferIPv4Stack", "true");


        File workDir = new File(opts.workDir).getAbsoluteFile();
        if (!workDir.isDirectory() && !workDir.mkdirs())
            throw new IllegalStateException("cannot create work directory " + workDir);
        System.setProperty("IGNITE_HOME", workDir.getPath());

        IgniteConfiguration cfg = configuration(opts, workDir);
        say("starting node " + cfg.getIgniteInstanceName() + " (consistentId=" + cfg.getConsistentId()
            + ", thin-client " + HOST + ":" + opts.port + ", discovery " + HOST + ":" + opts.discoveryPort
            + ".." + (opts.discoveryPort + DISCOVERY_RANGE - 1) + ", communication " + HOST + ":"
            + opts.communicationPort + ", persistence=" + opts.persistence + ", backups=" + opts.backups
            + ", region=" + opts.memoryMb + "MiB, auth=" + opts.auth + ", tls=" + (opts.tlsKeystore != null)
            + ", work dir " + workDir + ")");

        CountDownLatch stopped = new CountDownLatch(1);
        AtomicBoolean signalled = new AtomicBoolean();
        String name = cfg.getIgniteInstanceName();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            signalled.set(true);
            say("signal received, stopping node " + name);
            try {
                Ignition.stop(name, true);
            }
            catch (Throwable t) {
                say("error while stopping: " + t);
            }
            say("node " + name + " stopped");
            flushLogs();
        }, "perper-fabric-shutdown"));

        Ignite ignite;
        try {
            ignite = Ignition.start(cfg);
        }
        catch (Throwable t) {
            say("node failed to start: " + t);
            t.printStackTrace(System.out);
            flushLogs();
            System.exit(1);
            return;
        }
        Ignition.addListener((igniteName, state) -> {
            if (name.equals(igniteName) && state != IgniteState.STARTED)
                stopped.countDown();
        });
        say("node started, " + ignite.cluster().forServers().nodes().size() + " server node(s) in topology");

        try {
            activateWhenComplete(ignite, opts);
            if (opts.auth)
                ensureUser(ignite);
        }
        catch (Exception e) {
            if (!signalled.get())
                say("activation loop failed: " + e);
        }

        // Keep the JVM alive until the node is stopped (SIGTERM, failure handler, ...).
        if (Ignition.state(name) == IgniteState.STARTED)
            stopped.await();
        if (!signalled.get()) {
            // Stopped without a signal (failure handler, segmentation): exit non-zero.
            say("node " + name + " stopped on its own (" + Ignition.state(name) + "), exiting");
            flushLogs();
            System.exit(1);
        }
    }

    /** Builds the whole node configuration (loopback only). */
    static IgniteConfiguration configuration(Options opts, File workDir) {
        IgniteConfiguration cfg = new IgniteConfiguration();
        cfg.setIgniteInstanceName("perper-" + opts.port + "-" + ProcessHandle.current().pid());
        // Stable across restarts: the persistence folder is chosen by consistentId, so restarting
        // with the same work dir and port finds its data again.
        cfg.setConsistentId("perper-" + opts.port);
        cfg.setWorkDirectory(workDir.getPath());
        cfg.setIgniteHome(workDir.getPath());
        cfg.setLocalHost(HOST);
        cfg.setGridLogger(new StdoutLogger("ignite"));

        // Nothing that reaches beyond this JVM unless asked for.
        cfg.setPeerClassLoadingEnabled(false);
        cfg.setMetricExporterSpi();            // no JMX/OpenCensus/log metric exporters
        cfg.setMetricsLogFrequency(0);         // no periodic metrics dump in the log
        cfg.setConnectorConfiguration(null);   // no legacy REST/binary connector on 11211
        cfg.setAuthenticationEnabled(opts.auth);

        TcpDiscoveryVmIpFinder ipFinder = new TcpDiscoveryVmIpFinder(false);
        ipFinder.setAddresses(List.of(HOST + ":" + opts.discoveryPort + ".."
            + (opts.discoveryPort + DISCOVERY_RANGE - 1)));
        TcpDiscoverySpi discovery = new TcpDiscoverySpi();
        discovery.setIpFinder(ipFinder);
        discovery.setLocalAddress(HOST);
        discovery.setLocalPort(opts.discoveryPort);
        discovery.setLocalPortRange(DISCOVERY_RANGE - 1);
        cfg.setDiscoverySpi(discovery);

        TcpCommunicationSpi communication = new TcpCommunicationSpi();
        communication.setLocalAddress(HOST);
        communication.setLocalPort(opts.communicationPort);
        communication.setLocalPortRange(0);    // exactly this port: fail loudly rather than wander
        communication.setMessageQueueLimit(1024); // bounded outbound queues (the default is unbounded)
        cfg.setCommunicationSpi(communication);

        ClientConnectorConfiguration client = new ClientConnectorConfiguration();
        client.setHost(HOST);
        client.setPort(opts.port);
        client.setPortRange(0);                // exactly this port (clients are told which one)
        client.setThinClientEnabled(true);
        if (opts.tlsKeystore != null) {
            SslContextFactory ssl = new SslContextFactory();
            ssl.setKeyStoreFilePath(opts.tlsKeystore);
            String lower = opts.tlsKeystore.toLowerCase();
            ssl.setKeyStoreType(lower.endsWith(".p12") || lower.endsWith(".pfx") ? "PKCS12" : "JKS");
            ssl.setKeyStorePassword(env("PERPER_FABRIC_KEYSTORE_PASSWORD", "").toCharArray());
            ssl.setTrustManagers(SslContextFactory.getDisabledTrustManager()); // no client certificates
            client.setSslEnabled(true);
            client.setUseIgniteSslContextFactory(false);
            client.setSslClientAuth(false);
            client.setSslContextFactory(ssl);
        }
        cfg.setClientConnectorConfiguration(client);

        long maxBytes = opts.memoryMb * 1024L * 1024L;
        DataRegionConfiguration region = new DataRegionConfiguration();
        region.setName("default");
        region.setMaxSize(maxBytes);
        region.setInitialSize(Math.min(maxBytes, 64L * 1024 * 1024));
        region.setPersistenceEnabled(opts.persistence);
        DataStorageConfiguration storage = new DataStorageConfiguration();
        storage.setDefaultDataRegionConfiguration(region);
        if (opts.persistence) {
            storage.setWalMode(WALMode.LOG_ONLY);
            storage.setWalSegmentSize(opts.walSegmentMb * 1024 * 1024);
            storage.setWalSegments(4);
            storage.setMaxWalArchiveSize(16L * opts.walSegmentMb * 1024 * 1024);
        }
        cfg.setDataStorageConfiguration(storage);

        // INDEX_TEMPLATE ("perper_index", the trailing '*' marks a template): what the
        // Ignite SQL tables of indexed streams are created with (CREATE TABLE ... WITH
        // "template=perper_index"), so each takes few partitions, like the two caches.
        cfg.setCacheConfiguration(
            cache(SEGMENTS_CACHE, CacheAtomicityMode.ATOMIC, opts.backups),
            cache(META_CACHE, CacheAtomicityMode.TRANSACTIONAL, opts.backups),
            cache(INDEX_TEMPLATE + "*", CacheAtomicityMode.ATOMIC, opts.backups));
        return cfg;
    }

    /** The cache template of indexed streams' SQL tables (perper/store/ignite/index.py). */
    static final String INDEX_TEMPLATE = "perper_index";

    static CacheConfiguration<Object, Object> cache(String name, CacheAtomicityMode mode, int backups) {
        CacheConfiguration<Object, Object> cc = new CacheConfiguration<>(name);
        cc.setCacheMode(CacheMode.PARTITIONED);
        cc.setAtomicityMode(mode);
        cc.setBackups(backups);
        cc.setAffinity(new RendezvousAffinityFunction(false, PARTITIONS));
        cc.setWriteSynchronizationMode(CacheWriteSynchronizationMode.FULL_SYNC);
        // A durable log must not silently read "nothing" from a partition whose owners are gone.
        cc.setPartitionLossPolicy(PartitionLossPolicy.READ_WRITE_SAFE);
        return cc;
    }

    /**
     * With persistence a new cluster starts INACTIVE and has no baseline. Activating it fixes the
     * baseline to the server nodes present at that moment, so activation must wait until all
     * expected nodes have joined. Every node runs this loop (so it does not matter which node comes
     * up last, or which one survives a kill); activation is idempotent and a concurrent attempt by
     * another node just makes ours fail, after which we re-read the state.
     * On a restart with existing data Ignite re-activates by itself once the whole baseline is back;
     * the loop then finds the cluster ACTIVE and does nothing.
     */
    static void activateWhenComplete(Ignite ignite, Options opts) throws InterruptedException {
        IgniteCluster cluster = ignite.cluster();
        long lastReport = 0;
        while (Ignition.state(ignite.name()) == IgniteState.STARTED) {
            ClusterState state = cluster.state();
            int servers = cluster.forServers().nodes().size();
            if (state == ClusterState.ACTIVE) {
                if (opts.persistence)
                    extendBaseline(ignite);
                say("cluster is ACTIVE with " + servers + " server node(s); ready on " + HOST + ":" + opts.port);
                return;
            }
            if (servers >= opts.nodes) {
                say("all " + opts.nodes + " expected server node(s) joined; activating the cluster");
                try {
                    cluster.state(ClusterState.ACTIVE);
                }
                catch (Exception e) {
                    say("activation attempt failed (another node may be activating): " + e.getMessage());
                }
                continue;
            }
            long now = System.currentTimeMillis();
            if (now - lastReport > 5000) {
                say("cluster is " + state + ", waiting for server nodes: " + servers + "/" + opts.nodes);
                lastReport = now;
            }
            Thread.sleep(200);
        }
    }

    /**
     * Creates the user named by $PERPER_FABRIC_USER with $PERPER_FABRIC_PASSWORD, or sets its
     * password, acting as Ignite's default user (ignite/ignite), which alone may manage users.
     * Once the default user's own password was changed this is skipped (the users persist).
     */
    static void ensureUser(Ignite ignite) throws Exception {
        String user = env("PERPER_FABRIC_USER", "");
        String password = env("PERPER_FABRIC_PASSWORD", "");
        if (user.isEmpty()) {
            say("authentication on; users: ignite (the default)");
            return;
        }
        IgniteSecurity security = ((IgniteEx)ignite).context().security();
        AuthenticationContext login = new AuthenticationContext();
        login.credentials(new SecurityCredentials("ignite", "ignite"));
        login.subjectType(SecuritySubjectType.REMOTE_CLIENT);
        login.subjectId(UUID.randomUUID());
        SecurityContext admin;
        try {
            admin = security.authenticate(login);
        }
        catch (Exception e) {
            admin = null;
        }
        if (admin == null) {
            say("authentication on; the default user's password was changed, users left as they are");
            return;
        }
        try (OperationSecurityContext ignored = security.withContext(admin)) {
            if (user.equalsIgnoreCase("ignite"))
                security.alterUser(user, password.toCharArray());
            else {
                try {
                    security.createUser(user, password.toCharArray());
                }
                catch (Exception e) {
                    security.alterUser(user, password.toCharArray());
                }
            }
        }
        say("authentication on; user " + user + " ready");
    }

    static String env(String name, String fallback) {
        String value = System.getenv(name);
        return value == null ? fallback : value;
    }

    /** Adds server nodes that joined an active persistent cluster but are not in its baseline yet. */
    static void extendBaseline(Ignite ignite) {
        IgniteCluster cluster = ignite.cluster();
        Collection<BaselineNode> baseline = cluster.currentBaselineTopology();
        Set<Object> inBaseline = new HashSet<>();
        if (baseline != null)
            for (BaselineNode n : baseline)
                inBaseline.add(n.consistentId());
        List<Object> missing = new ArrayList<>();
        for (ClusterNode n : cluster.forServers().nodes())
            if (!inBaseline.contains(n.consistentId()))
                missing.add(n.consistentId());
        if (missing.isEmpty())
            return;
        say("adding " + missing + " to the baseline topology");
        try {
            cluster.setBaselineTopology(cluster.topologyVersion());
        }
        catch (Exception e) {
            say("could not extend the baseline: " + e.getMessage());
        }
    }

    /**
     * Minimal Ignite logger: INFO and above, one line per record, to stdout (which perper.fabric
     * redirects into the node log file). Deliberately not java.util.logging: JUL resets its handlers
     * in its own shutdown hook, which would swallow everything Ignite logs while stopping on SIGTERM.
     */
    static final class StdoutLogger implements IgniteLogger {
        private static final DateTimeFormatter TS = DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm:ss.SSS");
        private final String category;

        StdoutLogger(String category) {
            this.category = category;
        }

        @Override public IgniteLogger getLogger(Object ctgr) {
            String name = ctgr instanceof Class ? ((Class<?>)ctgr).getSimpleName()
                : ctgr == null ? "ignite" : String.valueOf(ctgr);
            int dot = name.lastIndexOf('.');
            return new StdoutLogger(dot >= 0 && dot < name.length() - 1 ? name.substring(dot + 1) : name);
        }

        @Override public void trace(String msg) { }
        @Override public void debug(String msg) { }
        @Override public void info(String msg) { log("INFO ", msg, null); }
        @Override public void warning(String msg, Throwable e) { log("WARN ", msg, e); }
        @Override public void error(String msg, Throwable e) { log("ERROR", msg, e); }
        @Override public boolean isTraceEnabled() { return false; }
        @Override public boolean isDebugEnabled() { return false; }
        @Override public boolean isInfoEnabled() { return true; }
        @Override public boolean isQuiet() { return false; }
        @Override public String fileName() { return null; }

        private void log(String level, String msg, Throwable e) {
            synchronized (System.out) {
                System.out.println(LocalDateTime.now().format(TS) + " " + level + " " + category + " - " + msg);
                if (e != null)
                    e.printStackTrace(System.out);
                System.out.flush();
            }
        }
    }

    static void flushLogs() {
        System.out.flush();
        System.err.flush();
    }

    static void say(String msg) {
        System.out.println(TAG + msg);
        System.out.flush();
    }

    static final class Options {
        int port = 10800;
        int discoveryPort = 47500;
        int communicationPort = 47100;
        String workDir;
        int nodes = 1;
        int backups = -1;
        long memoryMb = 256;
        boolean persistence = true;
        int walSegmentMb = 16;
        boolean auth = false;
        String tlsKeystore;

        static Options parse(String[] args) {
            Options o = new Options();
            for (int i = 0; i < args.length; i++) {
                String a = args[i];
                switch (a) {
                    case "--port": o.port = intArg(args, ++i, a); break;
                    case "--discovery-port": o.discoveryPort = intArg(args, ++i, a); break;
                    case "--communication-port": o.communicationPort = intArg(args, ++i, a); break;
                    case "--work-dir": o.workDir = strArg(args, ++i, a); break;
                    case "--nodes": o.nodes = intArg(args, ++i, a); break;
                    case "--backups": o.backups = intArg(args, ++i, a); break;
                    case "--memory-mb": o.memoryMb = intArg(args, ++i, a); break;
                    case "--wal-segment-mb": o.walSegmentMb = intArg(args, ++i, a); break;
                    case "--no-persistence": o.persistence = false; break;
                    case "--persistence": o.persistence = true; break;
                    case "--auth": o.auth = true; break;
                    case "--tls-keystore": o.tlsKeystore = strArg(args, ++i, a); break;
                    default: usage("unknown argument: " + a);
                }
            }
            if (o.workDir == null)
                o.workDir = "work" + File.separator + o.port;
            if (o.nodes < 1)
                usage("--nodes must be at least 1");
            if (o.backups < 0)
                o.backups = o.nodes > 1 ? 1 : 0;
            if (o.memoryMb < 32)
                usage("--memory-mb must be at least 32");
            if (o.auth && !o.persistence)
                usage("--auth needs persistence: Ignite keeps its users in the persistent store");
            if (o.walSegmentMb < 1 || o.walSegmentMb > 1024)
                usage("--wal-segment-mb must be between 1 and 1024");
            return o;
        }

        static int intArg(String[] args, int i, String name) {
            String v = strArg(args, i, name);
            try {
                return Integer.parseInt(v);
            }
            catch (NumberFormatException e) {
                usage(name + " expects an integer, got " + v);
                return 0;
            }
        }

        static String strArg(String[] args, int i, String name) {
            if (i >= args.length)
                usage(name + " expects a value");
            return args[i];
        }

        static void usage(String msg) {
            System.err.println("Node.java: " + msg);
            System.err.println("usage: java -cp 'LIB/*' Node.java [--port N] [--discovery-port N]"
                + " [--communication-port N] [--work-dir DIR] [--nodes N] [--backups N] [--memory-mb N]"
                + " [--wal-segment-mb N] [--no-persistence] [--auth] [--tls-keystore FILE]");
            System.exit(2);
        }
    }
}
