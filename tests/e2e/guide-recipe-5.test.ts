import { guideSuite } from "./guides.suite.ts";

guideSuite("recipe-5");
