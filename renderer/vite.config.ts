// Builds the UI into dist/ui, which the agent serves (ApiServerInit.staticDir) to the Electron
// window or a browser. Relative asset URLs so the same build also loads from a file or a sub-path.
import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vite'

const here = fileURLToPath(new URL('.', import.meta.url))

export default defineConfig({
  root: here,
  base: './',
  logLevel: 'warn',
  build: {
    outDir: fileURLToPath(new URL('../dist/ui', import.meta.url)),
    emptyOutDir: true,
    sourcemap: true,
    // ECharts alone is ~600 kB minified; one local bundle loads fast from loopback.
    chunkSizeWarningLimit: 2000
  }
})
