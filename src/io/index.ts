/** Crash-safe file writes and the one loader of YAML config files. Exports by name only. */
export { writeFileAtomic, syncDir } from './atomic-file.ts';
export { configFieldPath, parseConfigValue, parseConfigYaml, readConfigFile, loadConfigFile, type ConfigYaml, configDir, configInvalid } from './read-config-file.ts';
