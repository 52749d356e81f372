package org.elasticsearch.plugins;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;

import org.elasticsearch.Build;
import org.elasticsearch.action.admin.cluster.node.info.PluginsAndModules;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.jdk.ModuleQualifiedExportsService;

/**
 * A plugins service that loads plugin classes from the class path (the jars Maven resolved)
 * instead of a distribution's modules/ directory. Lives in this package because the loading
 * helpers of PluginsService are package-private. Same approach as
 * codelibs/elasticsearch-cluster-runner (Apache-2.0), which is not on Maven Central for 8.x.
 */
public class ClasspathPluginsService extends PluginsService {

    private final List<LoadedPlugin> loaded;
    private final PluginsAndModules info;

    public ClasspathPluginsService(Settings settings, Environment environment,
            Collection<Class<? extends Plugin>> classes) {
        super(settings, environment.configFile(), environment.modulesFile(), environment.pluginsFile());
        List<LoadedPlugin> plugins = new ArrayList<>();
        for (Class<? extends Plugin> c : classes) {
            Plugin plugin = loadPlugin(c, settings, environment.configFile());
            PluginDescriptor descriptor = new PluginDescriptor(c.getName(), "classpath plugin", "NA",
                    Build.current().version(), Integer.toString(Runtime.version().feature()), c.getName(),
                    null, List.of(), false, false, false, false);
            plugins.add(new LoadedPlugin(descriptor, plugin));
        }
        List<PluginRuntimeInfo> infos = new ArrayList<>(super.info().getPluginInfos());
        plugins.stream().map(LoadedPlugin::descriptor).map(PluginRuntimeInfo::new).forEach(infos::add);
        loadExtensions(plugins);
        plugins.addAll(super.plugins());
        this.loaded = List.copyOf(plugins);
        this.info = new PluginsAndModules(infos, super.info().getModuleInfos());
    }

    @Override
    protected final List<LoadedPlugin> plugins() {
        return loaded;
    }

    @Override
    public PluginsAndModules info() {
        return info;
    }

    @Override
    protected void addServerExportsService(Map<String, List<ModuleQualifiedExportsService>> exports) {
        // class path, not module path: nothing to export
    }
}
