import { resetSuite } from "./reset.suite.ts";

resetSuite({ recipe: "recipe-3" });
