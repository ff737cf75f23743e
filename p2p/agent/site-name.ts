/**
 * Site names are how operators name sites in commands; they travel in the genesis and in
 * site-name transactions, so every site must judge them the same way: the rule is pure and fixed.
 */
export const MAX_SITE_NAME_LENGTH = 63

/** Why `name` is not a valid site name, or undefined if it is. */
export function siteNameProblem (name: unknown): string | undefined {
  if (typeof name !== 'string') return `a site name must be a string, got ${typeof name}`
  if (name.length === 0 || name.length > MAX_SITE_NAME_LENGTH) return `a site name must have 1 to ${MAX_SITE_NAME_LENGTH} characters, got ${name.length}`
  // Letters, digits, '.', '_' and '-', starting with a letter or digit: safe in a shell, a URL and a log line.
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) return `site name ${JSON.stringify(name)} may hold only letters, digits, ".", "_" and "-", and must start with a letter or digit`
  return undefined
}

/** Names are unique without regard to case, so "Site-A" cannot impersonate "site-a" in a listing. */
export function siteNameKey (name: string): string {
  return name.toLowerCase()
}
