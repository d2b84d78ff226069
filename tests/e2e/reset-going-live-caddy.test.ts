import { resetSuite } from "./reset.suite.ts";

// The caddy layout has exercises of its own (caddy, proxy-upgrade) instead of certificate.
resetSuite({ recipe: "going-live", options: { layout: "caddy" } });
