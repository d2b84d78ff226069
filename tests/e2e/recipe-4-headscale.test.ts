import { recipe4Suite } from "./recipe-4.suite.ts";

recipe4Suite("headscale");
