// Compiles HavenToken.sol with the pinned solc and OpenZeppelin into
// HavenToken.json (ABI + bytecode), the artifact havend builds against.
// `node compile.js --check` fails when the committed artifact differs.
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const source = fs.readFileSync(path.join(__dirname, 'HavenToken.sol'), 'utf8');
const input = {
  language: 'Solidity',
  sources: { 'HavenToken.sol': { content: source } },
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
const contract = output.contracts['HavenToken.sol'].HavenToken;
const artifact = JSON.stringify(
  { contractName: 'HavenToken', compiler: `solc ${solc.version()}`, abi: contract.abi, bytecode: '0x' + contract.evm.bytecode.object },
  null,
  2,
) + '\n';
const target = path.join(__dirname, 'HavenToken.json');
if (process.argv.includes('--check')) {
  const committed = fs.readFileSync(target, 'utf8');
  if (committed !== artifact) {
    console.error('HavenToken.json differs from a fresh compile of HavenToken.sol; run `npm run compile`');
    process.exit(1);
  }
  console.log('HavenToken.json matches a fresh compile');
} else {
  fs.writeFileSync(target, artifact);
  console.log(`wrote ${target}`);
}
