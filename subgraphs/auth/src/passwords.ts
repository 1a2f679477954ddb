import { hash, verify, type Options } from "@node-rs/argon2";

/** The password-hashing port: the domain never sees the algorithm. */
export interface PasswordHasher {
  hash(password: string): Promise<string>;
  verify(passwordHash: string, password: string): Promise<boolean>;
  /**
   * Spends the same time as `verify` on a user that does not exist, so a wrong email and a wrong
   * password cannot be told apart by timing.
   */
  verifyNobody(password: string): Promise<void>;
}

/**
 * argon2id with OWASP's baseline (19 MiB, 2 passes, 1 lane): ~20–40 ms here, memory-hard against
 * GPUs. `@node-rs/argon2` declares its Algorithm as a const enum, which isolatedModules cannot
 * read, hence the literal (2 = Argon2id).
 */
export const ARGON2ID_OPTIONS: Options = { algorithm: 2, memoryCost: 19_456, timeCost: 2, parallelism: 1 };

export async function createArgon2Hasher(options: Options = ARGON2ID_OPTIONS): Promise<PasswordHasher> {
  // A real hash with the same parameters: verifying against it costs what a real verify costs.
  const nobodyHash = await hash("nobody has this password, it only burns time", options);
  return {
    hash: (password) => hash(password, options),
    verify: (passwordHash, password) => verify(passwordHash, password).catch(() => false),
    verifyNobody: async (password) => {
      await verify(nobodyHash, password).catch(() => false);
    },
  };
}
