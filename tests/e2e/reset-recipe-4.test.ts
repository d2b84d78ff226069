import { resetSuite } from "./reset.suite.ts";

// Started behind a hard NAT at site B, so that its first stage (both NATs easy) is not done at the start.
resetSuite({
  recipe: "recipe-4",
  options: { "nat-b": "hard" },
  staged: "each exercise's solve sets the NAT types of its own stage",
});
