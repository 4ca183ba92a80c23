// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title HAVEN (HNV), the loyalty token havend mints and burns, many rewards per transaction.
/// @notice Every entry of a batch carries the number (`seq`) of the havend
/// intent it executes. A number is used once: an entry whose number is used
/// already, or a burn its holder cannot cover, is skipped with its own event
/// while the rest of the batch executes, so a double-send anywhere upstream
/// is a harmless skip and one bad entry never fails the others.
contract HavenToken is ERC20, AccessControl {
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");
    bytes32 public constant BURNER_ROLE = keccak256("BURNER_ROLE");

    /// @notice `IntentSkipped` reason: the number was used by an earlier transaction.
    uint8 public constant SKIPPED_USED = 1;
    /// @notice `IntentSkipped` reason: the holder's balance is under the burn's amount.
    uint8 public constant SKIPPED_INSUFFICIENT = 2;

    /// Used numbers, 256 per storage slot: bit `seq % 256` of word `seq / 256`
    /// (one warm slot serves 256 consecutive intents, as Permit2's unordered nonces).
    mapping(uint256 => uint256) private _usedWords;

    /// @notice The three arrays of a batch differ in length.
    error LengthMismatch();

    /// @notice An intent was executed: `minted` is false for a burn.
    event IntentExecuted(uint256 indexed seq, address indexed account, uint256 amount, bool minted);

    /// @notice An entry was not executed (`reason`: SKIPPED_USED or SKIPPED_INSUFFICIENT).
    event IntentSkipped(uint256 indexed seq, uint8 reason);

    /// @param admin holds DEFAULT_ADMIN_ROLE and grants the hot wallets their roles.
    constructor(address admin) ERC20("HAVEN", "HNV") {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Whether intent number `seq` was executed or skipped as insufficient.
    function intentUsed(uint256 seq) external view returns (bool) {
        return _usedWords[seq >> 8] & (uint256(1) << (seq & 0xff)) != 0;
    }

    function mintBatch(address[] calldata to, uint256[] calldata amounts, uint256[] calldata seqs) external onlyRole(MINTER_ROLE) {
        uint256 n = to.length;
        if (amounts.length != n || seqs.length != n) revert LengthMismatch();
        for (uint256 i; i < n; ++i) {
            if (!_use(seqs[i])) {
                emit IntentSkipped(seqs[i], SKIPPED_USED);
                continue;
            }
            _mint(to[i], amounts[i]);
            emit IntentExecuted(seqs[i], to[i], amounts[i], true);
        }
    }

    /// @notice A burn its holder cannot cover is skipped and its number used
    /// all the same: havend records it settled for nothing, and a later
    /// transaction must not burn it after all.
    function burnBatch(address[] calldata from, uint256[] calldata amounts, uint256[] calldata seqs) external onlyRole(BURNER_ROLE) {
        uint256 n = from.length;
        if (amounts.length != n || seqs.length != n) revert LengthMismatch();
        for (uint256 i; i < n; ++i) {
            if (!_use(seqs[i])) {
                emit IntentSkipped(seqs[i], SKIPPED_USED);
                continue;
            }
            if (balanceOf(from[i]) < amounts[i]) {
                emit IntentSkipped(seqs[i], SKIPPED_INSUFFICIENT);
                continue;
            }
            _burn(from[i], amounts[i]);
            emit IntentExecuted(seqs[i], from[i], amounts[i], false);
        }
    }

    /// Marks `seq` used; false when it was already.
    function _use(uint256 seq) private returns (bool) {
        uint256 word = seq >> 8;
        uint256 bit = uint256(1) << (seq & 0xff);
        uint256 used = _usedWords[word];
        if (used & bit != 0) return false;
        _usedWords[word] = used | bit;
        return true;
    }
}
