import { defineConfig } from "@playwright/test";
import base from "./playwright.config";

// The release build, for scripts/bench: FRESHET_E2E_BIN is set to it before this loads.
export default defineConfig({ ...base, testDir: "./perf", reporter: [["list"]] });
