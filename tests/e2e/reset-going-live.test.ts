import { resetSuite } from "./reset.suite.ts";

resetSuite({ recipe: "going-live" });
