import { caddySuite } from "./going-live-caddy.suite.ts";

caddySuite("headscale");
