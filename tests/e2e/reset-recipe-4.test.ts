import { resetSuite } from "./reset.suite.ts";

// Site A starts behind a hard NAT, a setting of no stage: every stage (each sets site A's NAT) is not done at the start.
resetSuite({
  recipe: "recipe-4",
  options: { "nat-a": "hard" },
  staged: "each exercise's solve sets the NAT types of its own stage",
});
