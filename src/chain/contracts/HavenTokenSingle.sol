// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title HAVEN (HNV) as first deployed: one mint or burn per transaction.
/// @notice Still supported (`chain.token_abi = "single"`). Every mint and burn carries the id of the havend intent it executes.
/// An intent id can be used once: a second transaction for the same intent
/// reverts, so a double-send anywhere upstream is harmless on chain.
contract HavenTokenSingle is ERC20, AccessControl {
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");
    bytes32 public constant BURNER_ROLE = keccak256("BURNER_ROLE");

    /// @notice Intent ids already executed.
    mapping(bytes32 => bool) public intentUsed;

    /// @notice The intent was executed before.
    error IntentAlreadyUsed(bytes32 intentId);

    /// @notice An intent was executed: `minted` is false for a burn.
    event IntentExecuted(bytes32 indexed intentId, address indexed account, uint256 amount, bool minted);

    /// @param admin holds DEFAULT_ADMIN_ROLE and grants the hot wallets their roles.
    constructor(address admin) ERC20("HAVEN", "HNV") {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    function mint(address to, uint256 amount, bytes32 intentId) external onlyRole(MINTER_ROLE) {
        _useIntent(intentId);
        _mint(to, amount);
        emit IntentExecuted(intentId, to, amount, true);
    }

    function burn(address from, uint256 amount, bytes32 intentId) external onlyRole(BURNER_ROLE) {
        _useIntent(intentId);
        _burn(from, amount);
        emit IntentExecuted(intentId, from, amount, false);
    }

    function _useIntent(bytes32 intentId) private {
        if (intentUsed[intentId]) revert IntentAlreadyUsed(intentId);
        intentUsed[intentId] = true;
    }
}
