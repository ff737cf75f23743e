/**
 * The Electron shell (main/shell.ts) against a stub of the electron module, with a real agent
 * process: window options, one instance per site profile, navigation and window locks, IPC sender
 * validation, native dialogs, tray status, and the agent stopped gracefully on quit.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { joinSiteSwarm, startSiteAgent, AgentStartError } from '../main/agent-runner.js'
import { assertTrustedSender, IPC, isAppUrl, parseJoinRequest, parseSaveRequest, runShell, siteArgument, UntrustedSenderError, windowOptions, type ShellConfig } from '../main/shell.js'
import { AgentProcess, bin, createSwarm, tempDataDir } from './support/agent-process.js'
import { eventually } from './support/peer-process.js'
import { agentServesUi, uiDir } from './support/ui-agents.js'
import { electronStub, StubWebContents } from './support/ui-electron-stub.js'

const preload = fileURLToPath(new URL('../main/preload.cjs', import.meta.url))

function config (argv: string[], startAgent: ShellConfig['startAgent'] = startSiteAgent): ShellConfig {
  return {
    argv,
    preload,
    defaultSite: 'desk-default',
    startAgent,
    joinSwarm: joinSiteSwarm,
    statusPollMs: 200,
    agent: { runtime: process.execPath, cli: bin, uiDir: agentServesUi() ? uiDir : null, env: { ...process.env, HGMIG_DEBUG: '' } }
  }
}

describe('Electron shell: pure checks', () => {
  test('the window is isolated: context isolation, sandbox, no Node, no webviews, the compiled preload', () => {
    const options = windowOptions(preload)
    const web = options.webPreferences!
    assert.equal(web.contextIsolation, true)
    assert.equal(web.sandbox, true)
    assert.equal(web.nodeIntegration, false)
    assert.equal(web.nodeIntegrationInWorker, false)
    assert.equal(web.nodeIntegrationInSubFrames, false)
    assert.equal(web.webSecurity, true)
    assert.equal(web.allowRunningInsecureContent, false)
    assert.equal(web.webviewTag, false)
    assert.equal(web.preload, preload)
    assert.ok(existsSync(preload), 'the preload is compiled to .cjs (sandboxed preloads cannot be ES modules)')
  })

  test('--site picks the profile; a bad name is refused with the rule', () => {
    assert.equal(siteArgument(['electron', 'main.js']), null)
    assert.equal(siteArgument(['electron', 'main.js', '--site', 'lab-2']), 'lab-2')
    assert.equal(siteArgument(['electron', 'main.js', '--site=lab.3']), 'lab.3')
    assert.throws(() => siteArgument(['x', '--site', '../etc']), /--site needs a site name/)
    assert.throws(() => siteArgument(['x', '--site']), /--site needs a site name/)
  })

  test('IPC senders: only the app\'s window showing the app\'s origin', () => {
    const trusted = { webContentsId: 7, origin: 'http://127.0.0.1:4000' }
    assert.doesNotThrow(() => { assertTrustedSender({ sender: { id: 7 }, senderFrame: { url: 'http://127.0.0.1:4000/#/logs' } }, trusted) })
    assert.throws(() => { assertTrustedSender({ sender: { id: 8 }, senderFrame: { url: 'http://127.0.0.1:4000/' } }, trusted) }, UntrustedSenderError)
    assert.throws(() => { assertTrustedSender({ sender: { id: 7 }, senderFrame: { url: 'http://127.0.0.1:4001/' } }, trusted) }, /not the app's origin/)
    assert.throws(() => { assertTrustedSender({ sender: { id: 7 }, senderFrame: { url: 'https://evil.example/' } }, trusted) }, UntrustedSenderError)
    assert.throws(() => { assertTrustedSender({ sender: { id: 7 }, senderFrame: null }, trusted) }, /unknown frame/)
    assert.throws(() => { assertTrustedSender({ sender: { id: 7 }, senderFrame: { url: 'http://127.0.0.1:4000/' } }, { webContentsId: null, origin: null }) }, UntrustedSenderError)
    assert.equal(isAppUrl('not a url', 'http://127.0.0.1:4000'), false)
  })

  test('save requests: a plain file name and string content only', () => {
    assert.deepEqual(parseSaveRequest({ suggestedName: 'log.csv', content: 'a,b\r\n' }), { suggestedName: 'log.csv', content: 'a,b\r\n' })
    for (const bad of [null, 'x', { suggestedName: '../x', content: '' }, { suggestedName: 'a/b', content: '' }, { suggestedName: '.bashrc', content: '' }, { suggestedName: 'x', content: 3 }, { suggestedName: '', content: '' }]) {
      assert.throws(() => parseSaveRequest(bad), /save request/, JSON.stringify(bad))
    }
  })

  test('join requests: an invite code only', () => {
    assert.deepEqual(parseJoinRequest({ code: ' hgmig-invite-1.abc_-DEF ' }), { code: 'hgmig-invite-1.abc_-DEF' })
    for (const bad of [null, { code: 3 }, { code: 'hgmig-invite-1.a b' }, { code: '--data=/etc' }, { code: '' }]) {
      assert.throws(() => parseJoinRequest(bad), /join request/, JSON.stringify(bad))
    }
  })

  test('the preload names the same IPC channels the main process handles', () => {
    const source = readFileSync(preload, 'utf8')
    for (const channel of Object.values(IPC)) assert.ok(source.includes(`'${channel}'`), channel)
  })

  test('a second instance of the same profile quits without starting an agent', async () => {
    const stub = electronStub({ userData: mkdtempSync(join(tmpdir(), 'hgmig-shell-')) })
    stub.lockAvailable = false
    let started = 0
    const shell = runShell(stub.electron, config(['electron', 'main.js'], async () => { started++; throw new Error('not reached') }))
    await shell.ready
    assert.equal(stub.quitCalls, 1)
    assert.equal(started, 0)
    assert.equal(stub.windows.length, 0)
  })

  test('an agent that cannot start is reported in a dialog and the app quits', async () => {
    const stub = electronStub({ userData: mkdtempSync(join(tmpdir(), 'hgmig-shell-')) })
    const shell = runShell(stub.electron, config(['electron', 'main.js'], async () => { throw new AgentStartError('no swarm for you') }))
    await shell.ready
    assert.deepEqual(stub.errors, [['hgmig: the agent did not start', 'no swarm for you']])
    assert.equal(stub.quitCalls, 1)
    assert.equal(stub.windows.length, 0)
  })
})

describe('Electron shell with a real agent', () => {
  test('joining another swarm from the app: the agent restarts in a fresh data directory and asks that swarm\'s member to admit it', async () => {
    const founderDir = tempDataDir()
    createSwarm(founderDir, 'site-a')
    const founder = new AgentProcess(founderDir)
    const userData = mkdtempSync(join(tmpdir(), 'hgmig-shell-'))
    const stub = electronStub({ userData, downloads: userData })
    const shell = runShell(stub.electron, config(['electron', 'main.js', '--site', 'desk-b']))
    try {
      const [{ client: a }] = await Promise.all([founder.ready(), shell.ready])
      const before = shell.agent!
      const contents = stub.windows[0]!.webContents
      const invoke = async (request: unknown, url = `${before.origin}/`): Promise<unknown> => await stub.ipc.get(IPC.joinSwarm)!({ sender: contents, senderFrame: { url } }, request)
      await assert.rejects(invoke({ code: 'hgmig-invite-1.AAAA' }), /invite code is damaged|holds no genesis/, 'a damaged code is refused by join')
      assert.notEqual(shell.agent, before, 'after a refused join the app runs its agent again')
      assert.equal(((await (await fetch(`${shell.agent!.origin}/v1/status`, { headers: { Authorization: `Bearer ${shell.agent!.token}` } })).json()) as { site: string }).site, 'desk-b', 'on its own swarm, as before')

      const { code } = await a.invite()
      await assert.rejects(invoke({ code }, 'https://evil.example/'), UntrustedSenderError)
      const result = await invoke({ code }, `${shell.agent!.origin}/`) as { site: string, previousData: string }
      assert.equal(result.site, 'desk-b')
      assert.ok(existsSync(join(result.previousData, 'swarm.json')), 'the founding data is kept aside')
      const joined = shell.agent!
      assert.deepEqual(stub.windows[0]!.loaded.at(-1), `${joined.origin}/`, 'the window shows the restarted agent')
      assert.equal(stub.windows.length, 1)
      const request = await eventually('desk-b asks site-a to admit it', async () => (await a.joinRequests()).find((r) => r.name === 'desk-b'))
      const status = await (await fetch(`${joined.origin}/v1/status`, { headers: { Authorization: `Bearer ${joined.token}` } })).json() as { peerId: string, role: string }
      assert.equal(request.peerId, status.peerId)
      assert.equal(status.role, 'joining')
      assert.deepEqual(stub.errors, [], 'restarting the agent for the join is not reported as a crash')
    } finally {
      await shell.agent?.stop(2000)
      await founder.kill()
    }
  })

  test('profile, locked window on the agent\'s origin, validated IPC, dialogs, tray, graceful stop', async () => {
    const userData = mkdtempSync(join(tmpdir(), 'hgmig-shell-'))
    const stub = electronStub({ userData, downloads: userData })
    const shell = runShell(stub.electron, config(['electron', 'main.js', '--site', 'desk-a']))
    try {
      await shell.ready
      const profile = join(userData, 'sites', 'desk-a')
      assert.equal(stub.paths['userData'], profile, 'one userData per site profile')
      assert.ok(existsSync(join(profile, 'agent', 'swarm.json')), 'the agent\'s data lives in the profile')
      const agent = shell.agent!
      const window = stub.windows[0]!
      assert.equal(stub.windows.length, 1)
      assert.deepEqual(window.options, windowOptions(preload))
      assert.deepEqual(window.loaded, [`${agent.origin}/`])
      assert.equal(window.visible, true)

      // Navigation and new windows stay on the agent's origin; permissions are refused.
      const contents = window.webContents
      assert.equal(contents.fire('will-navigate', 'https://evil.example/'), true)
      assert.equal(contents.fire('will-redirect', 'http://127.0.0.1:1/'), true)
      assert.equal(contents.fire('will-navigate', `${agent.origin}/#/logs`), false)
      assert.equal(contents.fire('will-attach-webview'), true)
      assert.deepEqual(contents.openHandler?.({ url: `${agent.origin}/` }), { action: 'deny' })
      let granted: boolean | undefined
      stub.permissionHandler?.(contents, 'media', (answer: boolean) => { granted = answer })
      assert.equal(granted, false)

      // IPC: the token goes to the app's page only, and it is the running agent's.
      const invoke = async (channel: string, sender: { id: number }, url: string, ...args: unknown[]): Promise<unknown> =>
        await stub.ipc.get(channel)!({ sender, senderFrame: { url } }, ...args)
      const token = await invoke(IPC.token, contents, `${agent.origin}/`) as string
      const status = await (await fetch(`${agent.origin}/v1/status`, { headers: { Authorization: `Bearer ${token}` } })).json() as { site: string }
      assert.equal(status.site, 'desk-a')
      await assert.rejects(invoke(IPC.token, contents, 'https://evil.example/'), UntrustedSenderError)
      await assert.rejects(invoke(IPC.token, new StubWebContents(), `${agent.origin}/`), UntrustedSenderError)

      assert.equal(await invoke(IPC.openImage, contents, `${agent.origin}/`), '/images/chosen.img')
      stub.saveDialogPath = join(userData, 'export.ndjson')
      assert.equal(await invoke(IPC.saveFile, contents, `${agent.origin}/`, { suggestedName: 'log.ndjson', content: '{"a":1}\n' }), stub.saveDialogPath)
      assert.equal(readFileSync(stub.saveDialogPath, 'utf8'), '{"a":1}\n')
      await assert.rejects(invoke(IPC.saveFile, contents, `${agent.origin}/`, { suggestedName: '../../.bashrc', content: 'x' }), /plain file name/)
      await assert.rejects(invoke(IPC.saveFile, contents, 'https://evil.example/', { suggestedName: 'x.csv', content: 'x' }), UntrustedSenderError)

      await eventually('the tray shows the swarm status', async () => stub.tooltips.find((t) => /^hgmig desk-a: 1\/1 sites connected · round \d+$/.test(t)))
      assert.match(stub.icons[0]!, /^data:image\/png;base64,iVBORw0KGgo/, 'the tray icon is a PNG')

      // Quit: the shell holds the app until the agent has stopped cleanly, then quits for real.
      stub.app.emit('window-all-closed')
      const exit = await agent.exited
      assert.deepEqual(exit, { code: 0, signal: null }, 'the agent exited by itself after SIGTERM')
      await eventually('the app quit after the agent stopped', async () => stub.quitCalls >= 2 ? true : undefined)
      assert.equal(existsSync(join(profile, 'agent', 'api.json')), false, 'the agent removed its api.json')
      assert.deepEqual(stub.errors, [], 'an intended stop is not reported as a crash')
    } finally {
      await shell.agent?.stop(2000)
    }
  })
})
