#!/usr/bin/env node
import '../dist/p2p/cli/index.js';
