import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { z } from "zod";

/**
 * The lab identity provider's config file (rendered by the recipe): the issuer URL, the relying
 * parties it knows (the coordination server), and the organisation's people with their
 * passwords and the claims the relying party reads (email, name, preferred_username, groups).
 */
const userSchema = z.strictObject({
  username: z.string().regex(/^[a-z][a-z0-9._-]*$/),
  password: z.string().min(1),
  name: z.string().min(1),
  email: z.email(),
  groups: z.array(z.string()).default([]),
});

const clientSchema = z.strictObject({
  client_id: z.string().min(1),
  client_secret: z.string().min(8),
  redirect_uris: z.array(z.url()).min(1),
});

const configSchema = z.strictObject({
  issuer: z.url(),
  listen: z.string().regex(/^[0-9.]+:\d+$/, "host:port"),
  clients: z.array(clientSchema).min(1),
  users: z.array(userSchema).min(1),
});

export type IdpConfig = z.infer<typeof configSchema>;
export type IdpUser = z.infer<typeof userSchema>;

export function loadIdpConfig(path: string): IdpConfig {
  const parsed = configSchema.safeParse(parse(readFileSync(path, "utf8")));
  if (!parsed.success) {
    const first = parsed.error.issues[0]!;
    throw new Error(`${path}: ${first.path.join(".") || "(top)"}: ${first.message}`);
  }
  return parsed.data;
}
