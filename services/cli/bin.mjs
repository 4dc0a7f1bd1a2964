#!/usr/bin/env node
// The package ships compiled JS in dist/ (built by `npm install` through the prepare script).
import '../../dist/services/cli/edgefl.js';
