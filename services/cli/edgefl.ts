import './compile-cache.js'; // first: caches the compilation of everything imported after it (Node 22+)
import { ConfigError, loadConfig } from '../shared/config.js';
import { envFromFlags, SERVICE_FLAGS } from './args.js';
import { CommandError, HELP_FLAG, UsageError, flagHelp, parseFlags } from './flags.js';

const HELP = `edgefl — federated learning at the edge, serverless on Knative

Local federation
  edgefl up [--nodes 3 --alpha 0.5 --rounds 20 ...]   everything on this machine (npm start); edgefl up --help
  edgefl watch DIR [--serving URL,...]                classify images dropped in DIR/node-<i>/inbox (or: edgefl up --inbox DIR)
Edge functions and aggregator (one process each; flags or EDGEFL_* environment)
  edgefl trainer --node-id 0 --nodes 3                the model-training function
  edgefl serve [--node-id 0]                          the model-serving function
  edgefl aggregator --trainer-urls URL,URL,...        the cloud aggregator and dashboard
Runs
  edgefl train --aggregator URL [--rounds N --target ACC --epochs N --strategy S --wait]
  edgefl status --aggregator URL [--run ID] [--json]
  edgefl status --kube [--namespace NS] [--json]      edge nodes in a Knative cluster
Model lifecycle (--aggregator URL; promote, rollback and prune need --token or EDGEFL_ADMIN_TOKEN)
  edgefl models list | promoted                       versions (candidate/promoted/canary/pruned); what serves where
  edgefl models promote V [--nodes node-1,...]        promote to the fleet, or a canary to named edge nodes
  edgefl models rollback [--nodes ...]                promote the previous promoted version again
  edgefl models prune [--dry-run]                     retention: what goes, what is kept and why
Model and data
  edgefl model summary [--model FILE]                 the CNN (or a Layers model.json), layer by layer
  edgefl data inspect [--nodes 3 --partition dirichlet --alpha 0.5]
  edgefl train-local [--epochs 3]                     centralised baseline on the built-in digits
Deployment
  edgefl manifests [--nodes N --image IMG --namespace NS --eventing --write DIR]

Service flags (trainer, serve, aggregator; each sets the environment variable named):
${flagHelp(SERVICE_FLAGS)}`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'up':
      return (await import('./up.js')).up(rest);
    case 'trainer':
    case 'serve':
    case 'aggregator': {
      const values = parseFlags({ ...SERVICE_FLAGS, ...HELP_FLAG }, rest);
      if (values.help) {
        console.log(`edgefl ${command} [flags]\n\n${flagHelp(SERVICE_FLAGS)}`);
        return 0;
      }
      const role = command === 'serve' ? 'serving' : command;
      const cfg = loadConfig({ ...process.env, ...envFromFlags(values) }, role);
      if (command === 'trainer') await (await import('../trainer/main.js')).startTrainer(cfg);
      else if (command === 'serve') await (await import('../serving/main.js')).startServing(cfg);
      else {
        const { mountDashboard } = await import('../../aggregator/dashboard.js');
        await (await import('../../aggregator/main.js')).startAggregator(cfg, { mount: mountDashboard });
      }
      return -1; // keep running
    }
    case 'watch':
      return (await import('../inbox/cli.js')).watchCommand(rest);
    case 'train':
      return (await import('./remote-commands.js')).trainRemote(rest);
    case 'status':
      if (rest.includes('--kube')) return (await import('./kube-commands.js')).runKubeStatusCommand(rest);
      return (await import('./remote-commands.js')).statusRemote(rest);
    case 'models':
      return (await import('./model-commands.js')).modelsCommand(rest);
    case 'manifests':
      return (await import('./kube-commands.js')).runManifestsCommand(rest);
    case 'model':
      if (rest[0] !== 'summary') throw new UsageError('usage: edgefl model summary');
      return (await import('./local-commands.js')).modelSummary(rest.slice(1));
    case 'data':
      if (rest[0] !== 'inspect') throw new UsageError('usage: edgefl data inspect [flags]');
      return (await import('./local-commands.js')).dataInspect(rest.slice(1));
    case 'train-local':
      return (await import('./local-commands.js')).trainLocalCommand(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(HELP);
      return 0;
    default:
      throw new UsageError(`unknown command '${command}'\n\n${HELP}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (e: unknown) => {
    if (e instanceof UsageError || e instanceof ConfigError) {
      console.error(`edgefl: ${e.message}`);
      process.exit(2);
    }
    // Matched by name: importing their modules here would load the image decoders into every service's start-up.
    if (e instanceof CommandError || (e instanceof Error && (e.name === 'ModelFormatError' || e.name === 'NodeDataError'))) {
      console.error(`edgefl: ${e.message}`);
      process.exit(1);
    }
    console.error(`edgefl: ${(e as Error).stack ?? String(e)}`);
    process.exit(1);
  },
);
