// Compiles HavenToken.sol (batches, the default) and HavenTokenSingle.sol
// (the first, one intent per transaction, still supported) with the pinned
// solc and OpenZeppelin into HavenToken.json and HavenTokenSingle.json
// (ABI + bytecode), the artifacts havend builds against.
// `node compile.js --check` fails when a committed artifact differs.
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const CONTRACTS = ['HavenToken', 'HavenTokenSingle'];
const input = {
  language: 'Solidity',
  sources: Object.fromEntries(
    CONTRACTS.map((name) => [`${name}.sol`, { content: fs.readFileSync(path.join(__dirname, `${name}.sol`), 'utf8') }]),
  ),
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: 'cancun',
    metadata: { bytecodeHash: 'none' },
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object'] } },
  },
};
function findImports(importPath) {
  try {
    return { contents: fs.readFileSync(require.resolve(importPath, { paths: [__dirname] }), 'utf8') };
  } catch (e) {
    return { error: `not found: ${importPath}` };
  }
}
const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const errors = (output.errors || []).filter((e) => e.severity === 'error');
if (errors.length) {
  errors.forEach((e) => console.error(e.formattedMessage));
  process.exit(1);
}
let stale = false;
for (const name of CONTRACTS) {
  const contract = output.contracts[`${name}.sol`][name];
  const artifact = JSON.stringify(
    { contractName: name, compiler: `solc ${solc.version()}`, abi: contract.abi, bytecode: '0x' + contract.evm.bytecode.object },
    null,
    2,
  ) + '\n';
  const target = path.join(__dirname, `${name}.json`);
  if (process.argv.includes('--check')) {
    const committed = fs.existsSync(target) ? fs.readFileSync(target, 'utf8') : '';
    if (committed !== artifact) {
      console.error(`${name}.json differs from a fresh compile of ${name}.sol; run \`npm run compile\``);
      stale = true;
    } else {
      console.log(`${name}.json matches a fresh compile`);
    }
  } else {
    fs.writeFileSync(target, artifact);
    console.log(`wrote ${target}`);
  }
}
if (stale) process.exit(1);
