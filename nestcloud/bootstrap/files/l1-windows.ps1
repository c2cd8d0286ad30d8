# nestcloud L1 bootstrap for Windows Server ($NcProfile: hyperv | wsl2 | none).
# Hyper-V and WSL2 need a reboot between enabling the feature and using it, so this script runs
# at every boot until it has reported ($NcDelivery 'user-data': the guest agent re-runs user
# data, e.g. <persist>true</persist>; 'provider': a startup task, because the provider's
# script runner must not reboot inside itself).
# It reports like the Linux check: one line 'NESTCLOUD-L1 {json}' on stdout, the same JSON in
# %ProgramData%\nestcloud\l1.json, and the same JSON as the instance tag $NcTag through
# Set-NcTag, which the provider defines above (its cloud's metadata service; a provider that
# reads l1.json itself, e.g. through a run-command API, defines it as a no-op). l1.json is
# written before the tag, and must stay the exact JSON (no marker word): nestcloud prints it
# after the marker.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$NcDir = Join-Path $env:ProgramData 'nestcloud'
New-Item -ItemType Directory -Force -Path $NcDir | Out-Null
$NcDone = Join-Path $NcDir 'l1.done'
if (Test-Path $NcDone) { exit 0 }
Start-Transcript -Append -Path (Join-Path $NcDir 'bootstrap.log') | Out-Null

function Send-NcReport([string]$Status, $Checks) {
  # Compact: an EC2 tag value holds at most 256 characters.
  $json = [ordered]@{status = $Status; profile = $NcProfile; checks = $Checks; v = 1} | ConvertTo-Json -Compress -Depth 4
  Set-Content -Path (Join-Path $NcDir 'l1.json') -Value $json
  Write-Output "NESTCLOUD-L1 $json"
  try { Set-NcTag $json } catch { Write-Output "nestcloud: could not set the $NcTag tag: $_" }
}

function Restart-Nc {
  if ($NcDelivery -eq 'user-data') { Restart-Computer -Force }
  else { shutdown.exe /r /t 30 /c 'nestcloud: reboot to enable the hypervisor' | Out-Null }
}

function Enable-NcFeatures {
  # $true when something was enabled and a reboot must come before the checks.
  if ($NcProfile -eq 'hyperv') {
    if ((Get-WindowsFeature -Name Hyper-V).Installed) { return $false }
    if ($NcDelivery -eq 'user-data') {
      Install-WindowsFeature -Name Hyper-V -IncludeManagementTools -Restart | Out-Null
    } else {
      Install-WindowsFeature -Name Hyper-V -IncludeManagementTools | Out-Null
    }
    return $true
  }
  if ($NcProfile -eq 'wsl2') {
    $changed = $false
    foreach ($n in 'Microsoft-Windows-Subsystem-Linux', 'VirtualMachinePlatform') {
      if ((Get-WindowsOptionalFeature -Online -FeatureName $n).State -ne 'Enabled') {
        Enable-WindowsOptionalFeature -Online -FeatureName $n -All -NoRestart | Out-Null
        $changed = $true
      }
    }
    return $changed
  }
  return $false
}

$checks = [ordered]@{}
function Test-Nc([string]$Name, [scriptblock]$Test) {
  try {
    $r = @(& $Test)
    $checks[$Name] = ($r.Count -gt 0) -and [bool]$r[-1]
  } catch {
    $checks[$Name] = $false
    Write-Output "nestcloud: check $Name failed: $_"
  }
}

$tries = Join-Path $NcDir 'enable.tries'
$n = 0
if (Test-Path $tries) { $n = [int](Get-Content $tries) }
if ($n -ge 2) {
  # Enabled twice and still not on after a reboot: report instead of rebooting forever.
  $checks['feature_enabled'] = $false
} else {
  Set-Content -Path $tries -Value ($n + 1)
  if (Enable-NcFeatures) { Restart-Nc; exit 0 }
}

if ($NcProfile -ne 'none') {
  Test-Nc 'hypervisor_present' { (Get-CimInstance Win32_ComputerSystem).HypervisorPresent }
}
if ($NcProfile -eq 'hyperv') {
  Test-Nc 'vmms' { (Get-Service vmms).Status -eq 'Running' }
  Test-Nc 'probe_vm' {
    $p = 'nestcloud-probe'
    Get-VM -Name $p -ErrorAction SilentlyContinue | Stop-VM -TurnOff -Force -ErrorAction SilentlyContinue
    Get-VM -Name $p -ErrorAction SilentlyContinue | Remove-VM -Force
    New-VM -Name $p -Generation 2 -MemoryStartupBytes 256MB -NoVHD | Out-Null
    try {
      Start-VM -Name $p
      Start-Sleep -Seconds 5
      (Get-VM -Name $p).State -eq 'Running'
    } finally {
      Stop-VM -Name $p -TurnOff -Force -ErrorAction SilentlyContinue
      Remove-VM -Name $p -Force -ErrorAction SilentlyContinue
    }
  }
  # L2 networking: a cloud L1 cannot MAC-spoof onto the cloud network, so guests get an
  # internal switch behind NAT (best effort: not a readiness check).
  try {
    if (-not (Get-VMSwitch -Name 'nestcloud-nat' -ErrorAction SilentlyContinue)) {
      New-VMSwitch -Name 'nestcloud-nat' -SwitchType Internal | Out-Null
      New-NetIPAddress -IPAddress 192.168.100.1 -PrefixLength 24 -InterfaceAlias 'vEthernet (nestcloud-nat)' | Out-Null
      New-NetNat -Name 'nestcloud-nat' -InternalIPInterfaceAddressPrefix 192.168.100.0/24 | Out-Null
    }
  } catch { Write-Output "nestcloud: NAT switch for L2 guests not created: $_" }
}
if ($NcProfile -eq 'wsl2') {
  Test-Nc 'wsl_features' {
    @('Microsoft-Windows-Subsystem-Linux', 'VirtualMachinePlatform' | Where-Object { (Get-WindowsOptionalFeature -Online -FeatureName $_).State -ne 'Enabled' }).Count -eq 0
  }
  Test-Nc 'wsl' {
    # Native stderr must not become a terminating error here: only the exit code counts.
    $ErrorActionPreference = 'Continue'
    & wsl.exe --update | Out-Null
    & wsl.exe --status | Out-Null
    $LASTEXITCODE -eq 0
  }
}
if ($NcProfile -eq 'none') {
  $cpu = Get-CimInstance Win32_Processor | Select-Object -First 1
  Test-Nc 'vm_monitor_mode' { $cpu.VMMonitorModeExtensions }
  Test-Nc 'virtualization_firmware' { $cpu.VirtualizationFirmwareEnabled }
}

$bad = @($checks.Keys | Where-Object { -not $checks[$_] })
$status = 'ready'
if ($bad.Count -gt 0) { $status = 'failed' }
Send-NcReport $status $checks
New-Item -ItemType File -Force -Path $NcDone | Out-Null
if ($NcDelivery -eq 'provider') { Unregister-ScheduledTask -TaskName 'nestcloud-l1' -Confirm:$false -ErrorAction SilentlyContinue }

if ($NcUserScript) {
  # The user's own script (--user-data), once, after the readiness report.
  $us = Join-Path $NcDir 'user-script.ps1'
  [IO.File]::WriteAllBytes($us, [Convert]::FromBase64String($NcUserScript))
  & powershell.exe -NoProfile -ExecutionPolicy Bypass -File $us
}
Stop-Transcript | Out-Null
