#!/usr/bin/env node
import '../polyfills.js';

import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { defaultDataDir } from './data-dir.js';
import * as agent from './commands/agent.js';
import * as consensus from './commands/consensus.js';
import * as image from './commands/image.js';
import * as status from './commands/status.js';
import * as swarm from './commands/swarm.js';
import * as vm from './commands/vm.js';

// Subcommand modules: each exports `register(program: Command): void`.
// To add one, create p2p/cli/commands/<name>.ts and list it here.
export interface CommandModule {
  register(program: Command): void;
}
const commands: CommandModule[] = [consensus, image, swarm, agent, status, vm];

/** Options every subcommand can read via `program.opts<GlobalOptions>()`. */
export interface GlobalOptions {
  data: string;
}

function packageVersion(): string {
  // dist/p2p/cli/index.js -> ../../../package.json (repo root)
  const url = new URL('../../../package.json', import.meta.url);
  const pkg = JSON.parse(readFileSync(url, 'utf8')) as { version?: string };
  return pkg.version ?? '0.0.0';
}

export function buildProgram(): Command {
  const program = new Command('hgmig')
    .description('Peer-to-peer VM migration agent')
    .version(packageVersion(), '-V, --version', 'print the version')
    .option('--data <dir>', 'data directory (env HGMIG_DATA)', defaultDataDir())
    .showHelpAfterError("(run 'hgmig --help' for usage)")
    .configureOutput({
      // Same prefix as our own errors: "hgmig: unknown command 'x'".
      outputError: (str, write) => write(str.replace(/^error: /, 'hgmig: ')),
    })
    .exitOverride()
    // Reached only when no registered subcommand matched.
    .allowExcessArguments(true)
    .action((_opts: GlobalOptions, cmd: Command) => {
      const [first] = cmd.args;
      if (first !== undefined) cmd.error(`error: unknown command '${first}'`);
      cmd.help();
    });
  for (const mod of commands) mod.register(program);
  return program;
}

function fail(err: unknown): never {
  if (process.env['HGMIG_DEBUG'] === '1' && err instanceof Error) {
    process.stderr.write(`${err.stack ?? err.message}\n`);
  } else {
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`hgmig: ${message}\n`);
  }
  process.exit(1);
}

async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander has already printed its own message (usage errors, --help, --version).
      process.exit(err.exitCode);
    }
    fail(err);
  }
}

await main(process.argv);
