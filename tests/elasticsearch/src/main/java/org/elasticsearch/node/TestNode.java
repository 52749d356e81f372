package org.elasticsearch.node;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.function.Supplier;

import org.elasticsearch.Build;
import org.elasticsearch.client.internal.node.NodeClient;
import org.elasticsearch.cluster.metadata.IndexNameExpressionResolver;
import org.elasticsearch.cluster.node.DiscoveryNodes;
import org.elasticsearch.cluster.service.ClusterService;
import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.ClusterSettings;
import org.elasticsearch.common.settings.IndexScopedSettings;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.common.settings.SettingsFilter;
import org.elasticsearch.env.Environment;
import org.elasticsearch.features.NodeFeature;
import org.elasticsearch.plugins.ActionPlugin;
import org.elasticsearch.plugins.ClasspathPluginsService;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.rest.BaseRestHandler;
import org.elasticsearch.rest.RestController;
import org.elasticsearch.rest.RestHandler;
import org.elasticsearch.rest.RestRequest;
import org.elasticsearch.rest.RestResponse;
import org.elasticsearch.rest.RestStatus;
import org.elasticsearch.transport.netty4.Netty4Plugin;
import org.elasticsearch.xcontent.XContentBuilder;

/**
 * One real Elasticsearch node in this JVM, for iaso-probe's integration tests.
 *
 * Usage: java -cp CLASSPATH org.elasticsearch.node.TestNode HOME_DIR key=value...
 * Every key=value is a node setting (http.port, transport.port, discovery.seed_hosts,
 * http.max_content_length, thread_pool.write.size, ...). The node runs until the JVM is
 * killed or gets SIGTERM (then it closes cleanly), or until the process ES_WATCH_PID names
 * is gone.
 *
 * The server jar and the netty4 transport are Elastic's own artifacts from Maven Central; the
 * only thing written here is `GET /` (the rest-root module is not published), answering the
 * node's real name, cluster and Build.current() version.
 */
public class TestNode extends Node {

    TestNode(Environment environment, List<Class<? extends Plugin>> plugins) {
        super(NodeConstruction.prepareConstruction(environment, new NodeServiceProvider() {
            @Override
            org.elasticsearch.plugins.PluginsService newPluginService(Environment env, Settings settings) {
                return new ClasspathPluginsService(settings, env, plugins);
            }
        }, true));
    }

    @Override
    protected void configureNodeAndClusterIdStateListener(ClusterService clusterService) {
        // not needed: no APM/logging node-id plumbing in tests
    }

    /** `GET /` as Elasticsearch answers it: node name, cluster name, version. */
    public static class RootRest extends Plugin implements ActionPlugin {
        @Override
        public List<RestHandler> getRestHandlers(Settings settings,
                org.elasticsearch.common.io.stream.NamedWriteableRegistry registry, RestController controller,
                ClusterSettings clusterSettings, IndexScopedSettings indexScopedSettings, SettingsFilter filter,
                IndexNameExpressionResolver resolver, Supplier<DiscoveryNodes> nodes,
                java.util.function.Predicate<NodeFeature> features) {
            String nodeName = settings.get("node.name", "node");
            String clusterName = settings.get("cluster.name", "elasticsearch");
            return List.of(new BaseRestHandler() {
                @Override
                public String getName() {
                    return "iaso_test_node_main";
                }

                @Override
                public List<Route> routes() {
                    return List.of(new Route(RestRequest.Method.GET, "/"));
                }

                @Override
                protected RestChannelConsumer prepareRequest(RestRequest request, NodeClient client) {
                    return channel -> {
                        XContentBuilder b = channel.newBuilder();
                        b.startObject();
                        b.field("name", nodeName);
                        b.field("cluster_name", clusterName);
                        b.startObject("version");
                        b.field("number", Build.current().version());
                        b.field("build_flavor", "oss-modules-test-node");
                        b.field("build_hash", Build.current().hash());
                        b.field("lucene_version", org.apache.lucene.util.Version.LATEST.toString());
                        b.endObject();
                        b.field("tagline", "You Know, for Search");
                        b.endObject();
                        channel.sendResponse(new RestResponse(RestStatus.OK, b));
                    };
                }
            });
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: TestNode HOME_DIR key=value...");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        Settings.Builder builder = Settings.builder();
        for (int i = 1; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            if (eq <= 0) {
                System.err.println("not a key=value setting: " + args[i]);
                System.exit(2);
            }
            builder.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }
        putIfAbsent(builder, "path.home", home.toString());
        putIfAbsent(builder, "path.data", home.resolve("data").toString());
        putIfAbsent(builder, "path.logs", home.resolve("logs").toString());
        putIfAbsent(builder, "network.host", "127.0.0.1");
        // log4j's root level is ERROR without a configuration file: show start-up and warnings
        putIfAbsent(builder, "logger.level", "INFO");
        Path config = home.resolve("config");
        for (Path p : List.of(home, config, home.resolve("data"), home.resolve("logs"), home.resolve("modules"),
                home.resolve("plugins"))) {
            Files.createDirectories(p);
        }
        Settings settings = builder.build();
        LogConfigurator.configureWithoutConfig(settings);
        Environment environment = InternalSettingsPreparer.prepareEnvironment(settings, Map.of(), config,
                () -> settings.get("node.name", "node"));
        Node node = new TestNode(environment, List.of(Netty4Plugin.class, RootRest.class));
        CountDownLatch closed = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
            } catch (IOException e) {
                e.printStackTrace();
            }
            closed.countDown();
        }));
        node.start();
        System.out.println("node started: " + Build.current().version());
        watchParent(System.getenv("ES_WATCH_PID"));
        closed.await();
    }

    /**
     * When ES_WATCH_PID names a process (the test binary that started this node), exit as soon
     * as it is gone, so no JVM outlives a test run, even one killed with SIGKILL.
     */
    private static void watchParent(String pid) {
        if (pid == null || pid.isBlank()) {
            return;
        }
        java.util.Optional<ProcessHandle> parent = ProcessHandle.of(Long.parseLong(pid.trim()));
        if (parent.isEmpty()) {
            System.err.println("ES_WATCH_PID " + pid + " is not running: exiting");
            System.exit(0);
        }
        Thread watcher = new Thread(() -> {
            while (parent.get().isAlive()) {
                try {
                    Thread.sleep(500);
                } catch (InterruptedException e) {
                    return;
                }
            }
            System.err.println("watched process " + pid + " is gone: stopping the node");
            System.exit(0);
        }, "parent-watch");
        watcher.setDaemon(true);
        watcher.start();
    }

    private static void putIfAbsent(Settings.Builder builder, String key, String value) {
        if (builder.get(key) == null) {
            builder.put(key, value);
        }
    }
}
