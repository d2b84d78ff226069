/** The identity provider's one page: a username/password form for an interaction. */

const html = (s: string) => s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

export function loginPage(opts: { uid: string; client: string; username?: string; error?: string }): string {
  const error = opts.error ? `<p id="error" role="alert">${html(opts.error)}</p>` : "";
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in: lab identity provider</title>
<style>body{font-family:sans-serif;max-width:22rem;margin:3rem auto}label,input,button{display:block;width:100%;margin:.3rem 0}#error{color:#b00}</style>
</head>
<body>
<h1>Sign in</h1>
<p>to continue to <strong>${html(opts.client)}</strong></p>
${error}
<form method="post" action="/interaction/${html(opts.uid)}/login" autocomplete="off">
<label for="username">Username</label>
<input id="username" name="username" required autofocus value="${html(opts.username ?? "")}">
<label for="password">Password</label>
<input id="password" name="password" type="password" required>
<button id="submit" type="submit">Sign in</button>
</form>
</body>
</html>
`;
}
